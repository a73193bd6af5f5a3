-- Grain: one row per parsed record (one GA4 event) of a BigQuery export file being loaded
--        (NDJSON as BigQuery writes it, INT64 as strings or numbers, or Parquet).
-- Reads: scratch table _ingest_src (_journeys_row, line, obj: the event row as a JSON object), the
--        country seed ($country_codes_path).
-- Params: $country_codes_path (CSV: country_name, alpha2),
--         $file_day (YYYYMMDD from an events_YYYYMMDD / events_intraday_YYYYMMDD file name, or null).
-- Meaning: the canonical fields as text for sql/ingest/typed_events.sql.
--          event_params (key + string/int/float/double value) become one JSON object; GA4 has no
--          event id, so event_id = md5 of event_date | stream_id | user_pseudo_id | ga_session_id |
--          event_name | event_timestamp | the event_params list (typed, in export order), the fields
--          dbt-ga4 partitions by to drop duplicate events. event_timestamp is UTC microseconds
--          (ts_unit 'us'); session_id = user_pseudo_id:ga_session_id. Source / medium / campaign are
--          the event's own (params source/medium/campaign, else collected_traffic_source manual_*,
--          else google / cpc for a gclid); traffic_source (the user's first touch) is kept in
--          properties only. Revenue is ecommerce.purchase_revenue (else the value param) on purchase,
--          minus ecommerce.refund_value on refund. geo.country names become ISO alpha-2 codes
--          through the seed. The event's day (event_date, else $file_day) is kept in properties as
--          event_date: re-loading a day replaces it (pipeline/ingest/adapters.py).
with source as (
    select
        s._journeys_row as row_number,
        s.obj ->> 'event_date' as event_date,
        s.obj ->> 'event_timestamp' as event_timestamp,
        s.obj ->> 'event_name' as event_name,
        s.obj ->> 'user_pseudo_id' as user_pseudo_id,
        s.obj ->> 'user_id' as user_id,
        s.obj ->> 'stream_id' as stream_id,
        s.obj ->> 'platform' as platform,
        s.obj ->> '$.device.category' as device_category,
        s.obj ->> '$.geo.country' as geo_country,
        s.obj ->> '$.items[0].item_id' as first_item_id,
        s.obj ->> '$.ecommerce.purchase_revenue' as purchase_revenue,
        s.obj ->> '$.ecommerce.refund_value' as refund_value,
        s.obj ->> '$.ecommerce.transaction_id' as transaction_id,
        s.obj ->> '$.collected_traffic_source.manual_source' as manual_source,
        s.obj ->> '$.collected_traffic_source.manual_medium' as manual_medium,
        s.obj ->> '$.collected_traffic_source.manual_campaign_name' as manual_campaign,
        s.obj ->> '$.collected_traffic_source.gclid' as gclid,
        case when json_type(s.obj -> 'traffic_source') = 'OBJECT' then s.obj -> 'traffic_source' end as traffic_source,
        case
            when json_type(s.obj -> 'event_params') = 'ARRAY' then from_json(
                s.obj -> 'event_params',
                '[{"key": "VARCHAR", "value": {"string_value": "VARCHAR", "int_value": "BIGINT",
                   "float_value": "DOUBLE", "double_value": "DOUBLE"}}]'
            )
        end as event_params
    from _ingest_src as s
    where s.obj is not null
),

countries as (
    select lower(trim(country_name)) as country_key, alpha2
    from read_csv($country_codes_path, all_varchar = true, header = true)
),

params as (
    select
        *,
        -- one JSON object key -> typed value; a repeated key keeps its first value
        to_json(map_from_entries(list_transform(
            list_filter(
                coalesce(event_params, []),
                lambda p, i: p.key is not null
                and list_position(list_transform(coalesce(event_params, []), lambda q: q.key), p.key) = i
            ),
            lambda p: {
                'key': p.key,
                'value': coalesce(
                    to_json(p.value.string_value),
                    to_json(p.value.int_value),
                    to_json(coalesce(p.value.double_value, p.value.float_value))
                )
            }
        ))) as params_json,
        coalesce(event_date, $file_day) as event_day
    from source
),

fields as (
    select
        p.*,
        p.params_json ->> 'ga_session_id' as ga_session_id,
        coalesce(p.params_json ->> 'source', p.manual_source, case when p.gclid is not null then 'google' end)
            as traffic_source_name,
        coalesce(p.params_json ->> 'medium', p.manual_medium, case when p.gclid is not null then 'cpc' end)
            as traffic_medium,
        coalesce(p.params_json ->> 'campaign', p.manual_campaign) as traffic_campaign,
        c.alpha2 as country_code
    from params as p
    left join countries as c on lower(trim(p.geo_country)) = c.country_key
),

final as (
    select
        row_number,
        md5(concat_ws(
            '|', coalesce(event_day, ''), coalesce(stream_id, ''), coalesce(user_pseudo_id, ''),
            coalesce(ga_session_id, ''), coalesce(event_name, ''), coalesce(event_timestamp, ''),
            coalesce(cast(to_json(event_params) as varchar), '')
        )) as event_id,
        user_id,
        user_pseudo_id as anonymous_id,
        case when ga_session_id is not null then user_pseudo_id || ':' || ga_session_id end as session_id,
        event_timestamp as ts,
        event_name,
        event_name as raw_event_name,
        traffic_source_name as source,
        traffic_medium as medium,
        traffic_campaign as campaign,
        cast(null as varchar) as channel,
        params_json ->> 'page_location' as page_url,
        params_json ->> 'page_referrer' as referrer,
        first_item_id as product_id,
        case
            when event_name = 'purchase' then coalesce(purchase_revenue, params_json ->> 'value')
            when event_name = 'refund' and try_cast(refund_value as decimal(18, 2)) is not null
                then cast(-abs(try_cast(refund_value as decimal(18, 2))) as varchar)
            when event_name = 'refund' then refund_value
        end as revenue,
        params_json ->> 'currency' as currency,
        device_category as device,
        coalesce(
            country_code,
            case when regexp_full_match(trim(geo_country), '[A-Za-z]{2}') then trim(geo_country) end
        ) as country,
        json_merge_patch(
            json_merge_patch(
                coalesce(params_json, '{}'),
                '{"ga_session_id": null, "page_location": null, "page_referrer": null, "source": null,
                  "medium": null, "campaign": null, "currency": null}'
            ),
            json_merge_patch('{}', json_object(
                'event_date', event_day,
                'stream_id', stream_id,
                'platform', platform,
                'transaction_id', transaction_id,
                'geo_country', geo_country,
                'traffic_source', traffic_source
            ))
        ) as properties,
        'us' as ts_unit,
        cast(null as varchar) as dedupe_at
    from fields
)

select * from final
