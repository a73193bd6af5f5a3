-- Grain: one row per parsed record of the file being loaded.
-- Reads: CTE src_fields (row_number, every canonical column as text, properties as json, ts_unit,
--        dedupe_at), put in front of this file by pipeline/ingest for one file: the canonical
--        column mapping or a format adapter (sql/ingest/adapters/<format>.sql).
-- Params: $epoch_unit ('auto' | 's' | 'ms' | 'us' | 'ns'): how a numeric ts is read; 'auto' picks
--         by magnitude (< 1e11 seconds, < 1e14 millis, < 1e17 micros, else nanos). A row's own
--         ts_unit (an adapter that knows its unit, e.g. GA4 micros) wins over $epoch_unit.
--         $pii_email, $pii_query, $pii_ipv4, $pii_ipv6_full, $pii_ipv6_short: the PII patterns of
--         pipeline/privacy.py (RE2). $pseudonymise (boolean): store user_id as its keyed hash.
--         $hash_ids (boolean): compute the keyed hashes (pseudonymising, or forgotten ids to drop).
--         $key_ipad, $key_opad (blob): the HMAC-SHA256 key material (empty when there is no key).
-- Meaning: trims and normalises text, casts ts and revenue, redacts PII before storage (e-mail
--          addresses and sensitive query parameters in URLs; e-mails and IP addresses in URLs,
--          referrers, UTM fields and the string values of properties: IPv4 last octet zeroed, IPv6
--          cut to /48), pseudonymises user_id, event_id and session_id when asked (HMAC-SHA256 hex;
--          the *_source columns keep the raw ids for the quarantine text, in this temporary table
--          only), derives event_id when the source has none (from the stored, redacted values), and
--          names the first field that failed to cast (failed_field, reason) for quarantine.
--          dedupe_at (a timestamp, may be null) orders rows sharing an event_id: the earliest is
--          kept. user_id_hmac / anonymous_id_hmac (keyed hashes of the raw ids, null without
--          $hash_ids) find rows of forgotten users.
with fields as (
    select
        row_number,
        nullif(trimmed(event_id), '') as event_id,
        nullif(trimmed(user_id), '') as user_id,
        nullif(trimmed(anonymous_id), '') as anonymous_id,
        nullif(trimmed(session_id), '') as session_id,
        nullif(trimmed(ts), '') as ts_text,
        nullif(trimmed(event_name), '') as event_name_text,
        nullif(trimmed(raw_event_name), '') as raw_event_name,
        nullif(trimmed(source), '') as source,
        nullif(trimmed(medium), '') as medium,
        nullif(trimmed(campaign), '') as campaign,
        nullif(trimmed(channel), '') as channel,
        nullif(trimmed(page_url), '') as page_url,
        nullif(trimmed(referrer), '') as referrer,
        nullif(trimmed(product_id), '') as product_id,
        nullif(trimmed(revenue), '') as revenue_text,
        upper(nullif(trimmed(currency), '')) as currency,
        nullif(trimmed(device), '') as device,
        upper(nullif(trimmed(country), '')) as country,
        nullif(cast(properties as varchar), '{}') as properties,
        nullif(trimmed(ts_unit), '') as ts_unit_declared,
        nullif(trimmed(dedupe_at), '') as dedupe_at_text
    from src_fields
),

numbers as (
    select
        *,
        regexp_full_match(ts_text, '-?[0-9]+(\.[0-9]+)?') as is_ts_epoch,
        try_cast(ts_text as double) as ts_number
    from fields
),

units as (
    select
        *,
        case
            when not is_ts_epoch then null
            when ts_unit_declared is not null then ts_unit_declared
            when $epoch_unit <> 'auto' then $epoch_unit
            when abs(ts_number) < 1e11 then 's'
            when abs(ts_number) < 1e14 then 'ms'
            when abs(ts_number) < 1e17 then 'us'
            else 'ns'
        end as ts_epoch_unit
    from numbers
),

typed as (
    select
        *,
        case
            when is_ts_epoch then try(make_timestamp(try_cast(
                ts_number * case ts_epoch_unit
                    when 's' then 1e6 when 'ms' then 1e3 when 'us' then 1 else 1e-3
                end as bigint
            )))
            else try_cast(try_cast(ts_text as timestamptz) as timestamp)
        end as ts,
        try_cast(revenue_text as decimal(18, 2)) as revenue,
        try_cast(try_cast(dedupe_at_text as timestamptz) as timestamp) as dedupe_at,
        lower(regexp_replace(event_name_text, '[\s-]+', '_', 'g')) as event_name
    from units
),

emails as (
    -- e-mail addresses (also %40-encoded) -> [email] (the redact_* macros:
    -- sql/ingest/macros.sql, created before this query runs)
    select
        * replace (
            redact_email(page_url, $pii_email) as page_url,
            redact_email(referrer, $pii_email) as referrer,
            redact_email(source, $pii_email) as source,
            redact_email(medium, $pii_email) as medium,
            redact_email(campaign, $pii_email) as campaign,
            redact_email(properties, $pii_email) as properties
        )
    from typed
),

query_params as (
    -- values of sensitive query parameters -> [redacted]
    select
        * replace (
            redact_query(page_url, $pii_query) as page_url,
            redact_query(referrer, $pii_query) as referrer,
            redact_query(properties, $pii_query) as properties
        )
    from emails
),

ipv4 as (
    -- IPv4 addresses: last octet zeroed
    select
        * replace (
            redact_ipv4(page_url, $pii_ipv4) as page_url,
            redact_ipv4(referrer, $pii_ipv4) as referrer,
            redact_ipv4(source, $pii_ipv4) as source,
            redact_ipv4(medium, $pii_ipv4) as medium,
            redact_ipv4(campaign, $pii_ipv4) as campaign,
            redact_ipv4(properties, $pii_ipv4) as properties
        )
    from query_params
),

ipv6_full as (
    -- IPv6 addresses of eight groups: the first three kept
    select
        * replace (
            redact_ipv6_full(page_url, $pii_ipv6_full) as page_url,
            redact_ipv6_full(referrer, $pii_ipv6_full) as referrer,
            redact_ipv6_full(source, $pii_ipv6_full) as source,
            redact_ipv6_full(medium, $pii_ipv6_full) as medium,
            redact_ipv6_full(campaign, $pii_ipv6_full) as campaign,
            redact_ipv6_full(properties, $pii_ipv6_full) as properties
        )
    from ipv4
),

ipv6_short as (
    -- IPv6 addresses with '::': at most the first three groups kept
    select
        * replace (
            redact_ipv6_short(page_url, $pii_ipv6_short) as page_url,
            redact_ipv6_short(referrer, $pii_ipv6_short) as referrer,
            redact_ipv6_short(source, $pii_ipv6_short) as source,
            redact_ipv6_short(medium, $pii_ipv6_short) as medium,
            redact_ipv6_short(campaign, $pii_ipv6_short) as campaign,
            redact_ipv6_short(properties, $pii_ipv6_short) as properties
        )
    from ipv6_full
),

hashed as (
    -- With $pseudonymise, event_id and session_id are keyed hashes too: source ids often embed the
    -- user id (u123-0001). The *_source columns keep the raw values for the quarantine text only.
    select
        * replace (
            case when $pseudonymise then user_id_hmac else user_id end as user_id,
            case when $pseudonymise and event_id is not null
                then sha256($key_opad || unhex(sha256($key_ipad || encode(event_id)))) else event_id end as event_id,
            case when $pseudonymise and session_id is not null
                then sha256($key_opad || unhex(sha256($key_ipad || encode(session_id)))) else session_id end
                as session_id
        ),
        user_id as user_id_source,
        event_id as event_id_source,
        session_id as session_id_source
    from (
        select
            *,
            case when $hash_ids and user_id is not null
                then sha256($key_opad || unhex(sha256($key_ipad || encode(user_id)))) end as user_id_hmac,
            case when $hash_ids and anonymous_id is not null
                then sha256($key_opad || unhex(sha256($key_ipad || encode(anonymous_id)))) end as anonymous_id_hmac
        from ipv6_short
    )
),

final as (
    select
        row_number,
        coalesce(
            event_id,
            md5(concat_ws(
                '|', coalesce(user_id, ''), coalesce(anonymous_id, ''),
                coalesce(strftime(ts, '%Y-%m-%dT%H:%M:%S.%f'), ''), coalesce(event_name, ''),
                coalesce(session_id, ''), coalesce(page_url, ''), coalesce(product_id, ''),
                coalesce(cast(revenue as varchar), '')
            ))
        ) as event_id,
        user_id,
        anonymous_id,
        session_id,
        ts,
        event_name,
        coalesce(raw_event_name, event_name_text) as raw_event_name,
        source,
        medium,
        campaign,
        channel,
        page_url,
        referrer,
        product_id,
        revenue,
        currency,
        device,
        country,
        properties,
        ts_epoch_unit,
        dedupe_at,
        user_id_source,
        event_id_source,
        session_id_source,
        user_id_hmac,
        anonymous_id_hmac,
        case
            when ts_text is not null and ts is null then 'ts'
            when revenue_text is not null and revenue is null then 'revenue'
        end as failed_field,
        case
            when ts_text is not null and ts is null then 'invalid_timestamp'
            when revenue_text is not null and revenue is null then 'invalid_number'
        end as reason
    from hashed
)

select * from final
