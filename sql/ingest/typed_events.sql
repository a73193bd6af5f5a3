-- Grain: one row per parsed record of the file being loaded.
-- Reads: CTE src_fields (row_number, every canonical column as text, properties as json, ts_unit,
--        dedupe_at), put in front of this file by pipeline/ingest for one file: the canonical
--        column mapping or a format adapter (sql/ingest/adapters/<format>.sql).
-- Params: $epoch_unit ('auto' | 's' | 'ms' | 'us' | 'ns'): how a numeric ts is read; 'auto' picks
--         by magnitude (< 1e11 seconds, < 1e14 millis, < 1e17 micros, else nanos). A row's own
--         ts_unit (an adapter that knows its unit, e.g. GA4 micros) wins over $epoch_unit.
-- Meaning: trims and normalises text, casts ts and revenue, redacts e-mail addresses and sensitive
--          query parameters from URLs, derives event_id when the source has none, and names the
--          first field that failed to cast (failed_field, reason) for quarantine. dedupe_at (a
--          timestamp, may be null) orders rows sharing an event_id: the earliest is kept.
with fields as (
    select
        row_number,
        nullif(trim(event_id), '') as event_id,
        nullif(trim(user_id), '') as user_id,
        nullif(trim(anonymous_id), '') as anonymous_id,
        nullif(trim(session_id), '') as session_id,
        nullif(trim(ts), '') as ts_text,
        nullif(trim(event_name), '') as event_name_text,
        nullif(trim(raw_event_name), '') as raw_event_name,
        nullif(trim(source), '') as source,
        nullif(trim(medium), '') as medium,
        nullif(trim(campaign), '') as campaign,
        nullif(trim(channel), '') as channel,
        nullif(trim(page_url), '') as page_url,
        nullif(trim(referrer), '') as referrer,
        nullif(trim(product_id), '') as product_id,
        nullif(trim(revenue), '') as revenue_text,
        upper(nullif(trim(currency), '')) as currency,
        nullif(trim(device), '') as device,
        upper(nullif(trim(country), '')) as country,
        nullif(cast(properties as varchar), '{}') as properties,
        nullif(trim(ts_unit), '') as ts_unit_declared,
        nullif(trim(dedupe_at), '') as dedupe_at_text
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

redacted as (
    select
        * replace (
            regexp_replace(
                regexp_replace(page_url, '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[email]', 'g'),
                '([?&](email|e-mail|mail|token|access_token|password|pwd|phone|ssn|auth|session_token)=)[^&#]*',
                '\1[redacted]', 'gi'
            ) as page_url,
            regexp_replace(
                regexp_replace(referrer, '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}', '[email]', 'g'),
                '([?&](email|e-mail|mail|token|access_token|password|pwd|phone|ssn|auth|session_token)=)[^&#]*',
                '\1[redacted]', 'gi'
            ) as referrer
        )
    from typed
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
        case
            when ts_text is not null and ts is null then 'ts'
            when revenue_text is not null and revenue is null then 'revenue'
        end as failed_field,
        case
            when ts_text is not null and ts is null then 'invalid_timestamp'
            when revenue_text is not null and revenue is null then 'invalid_number'
        end as reason
    from redacted
)

select * from final
