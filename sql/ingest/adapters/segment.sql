-- Grain: one row per parsed record (one Segment call: track / page / screen / identify / group /
--        alias) of the NDJSON file being loaded.
-- Reads: scratch table _ingest_src (_journeys_row, line, obj: the call as a JSON object), the
--        event-name seed ($event_names_path), the country seed ($country_codes_path).
-- Params: $event_names_path (CSV: format, source_event, event_name),
--         $country_codes_path (CSV: country_name, alpha2).
-- Meaning: the canonical fields as text for sql/ingest/typed_events.sql.
--          event_id = messageId. Event time = timestamp + (receivedAt - sentAt) when both are valid
--          timestamps and originalTimestamp is absent (the client clock's skew, measured when the
--          batch was sent, is removed); a payload that carries originalTimestamp was already corrected
--          by Segment, so its timestamp is used as is. track calls are named through the seed
--          (e-commerce spec names -> GA4-style names, others normalised); page / screen / identify /
--          group / alias through the seed by call type. context.campaign gives source / medium /
--          campaign; revenue is properties.revenue, else properties.total, on purchase (negated on
--          refund). An identify carries userId and anonymousId, which identity stitching uses; its
--          traits (profile data, often PII) are not stored.
with source as (
    select
        s._journeys_row as row_number,
        s.obj ->> 'messageId' as message_id,
        s.obj ->> 'type' as call_type,
        s.obj ->> 'event' as event,
        s.obj ->> 'name' as call_name,
        s.obj ->> 'userId' as user_id,
        s.obj ->> 'anonymousId' as anonymous_id,
        s.obj ->> 'timestamp' as timestamp_text,
        s.obj ->> 'originalTimestamp' as original_timestamp_text,
        s.obj ->> 'sentAt' as sent_at_text,
        s.obj ->> 'receivedAt' as received_at_text,
        case when json_type(s.obj -> 'properties') = 'OBJECT' then s.obj -> 'properties' end as props,
        s.obj ->> '$.context.campaign.source' as campaign_source,
        s.obj ->> '$.context.campaign.medium' as campaign_medium,
        s.obj ->> '$.context.campaign.name' as campaign_name,
        s.obj ->> '$.context.campaign.term' as campaign_term,
        s.obj ->> '$.context.campaign.content' as campaign_content,
        s.obj ->> '$.context.page.url' as context_page_url,
        s.obj ->> '$.context.page.referrer' as context_page_referrer,
        s.obj ->> '$.context.device.type' as device_type,
        s.obj ->> '$.context.location.country' as location_country
    from _ingest_src as s
    where s.obj is not null
),

event_names as (
    select
        lower(regexp_replace(trim(source_event), '[\s-]+', '_', 'g')) as source_key,
        event_name
    from read_csv($event_names_path, all_varchar = true, header = true)
    where format = 'segment'
),

countries as (
    select lower(trim(country_name)) as country_key, alpha2
    from read_csv($country_codes_path, all_varchar = true, header = true)
),

times as (
    select
        *,
        try_cast(timestamp_text as timestamptz) as timestamp_at,
        try_cast(sent_at_text as timestamptz) as sent_at,
        try_cast(received_at_text as timestamptz) as received_at,
        case when call_type = 'track' then event else call_type end as name_key
    from source
),

named as (
    select
        t.*,
        coalesce(en.event_name, t.name_key) as event_name,
        case
            when t.timestamp_at is null then t.timestamp_text
            when t.original_timestamp_text is null and t.sent_at is not null and t.received_at is not null
                then strftime(timezone('UTC', t.timestamp_at + (t.received_at - t.sent_at)), '%Y-%m-%dT%H:%M:%S.%fZ')
            else strftime(timezone('UTC', t.timestamp_at), '%Y-%m-%dT%H:%M:%S.%fZ')
        end as ts,
        coalesce(t.props ->> 'revenue', t.props ->> 'total') as amount,
        c.alpha2 as country_code
    from times as t
    left join event_names as en
        on lower(regexp_replace(trim(t.name_key), '[\s-]+', '_', 'g')) = en.source_key
    left join countries as c on lower(trim(t.location_country)) = c.country_key
),

final as (
    select
        row_number,
        message_id as event_id,
        user_id,
        anonymous_id,
        cast(null as varchar) as session_id,
        ts,
        event_name,
        coalesce(event, call_type) as raw_event_name,
        campaign_source as source,
        campaign_medium as medium,
        campaign_name as campaign,
        cast(null as varchar) as channel,
        coalesce(props ->> 'url', context_page_url) as page_url,
        coalesce(props ->> 'referrer', context_page_referrer) as referrer,
        coalesce(props ->> 'product_id', props ->> '$.products[0].product_id') as product_id,
        case
            when event_name = 'purchase' then amount
            when event_name = 'refund' and try_cast(amount as decimal(18, 2)) is not null
                then cast(-abs(try_cast(amount as decimal(18, 2))) as varchar)
            when event_name = 'refund' then amount
        end as revenue,
        props ->> 'currency' as currency,
        device_type as device,
        coalesce(
            country_code,
            case when regexp_full_match(trim(location_country), '[A-Za-z]{2}') then trim(location_country) end
        ) as country,
        json_merge_patch(
            json_merge_patch(coalesce(props, '{}'), '{"url": null, "referrer": null, "search": null}'),
            json_merge_patch('{}', json_object(
                'type', call_type,
                'name', call_name,
                'sentAt', sent_at_text,
                'receivedAt', received_at_text,
                'originalTimestamp', original_timestamp_text,
                'campaign_term', campaign_term,
                'campaign_content', campaign_content
            ))
        ) as properties,
        cast(null as varchar) as ts_unit,
        cast(null as varchar) as dedupe_at
    from named
)

select * from final
