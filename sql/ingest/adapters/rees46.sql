-- Grain: one row per parsed record of a REES46-style e-commerce CSV being loaded.
-- Reads: scratch table _ingest_src (_journeys_row, line, obj: the CSV row as a JSON object of
--        strings, so ids stay strings), the event-name seed ($event_names_path).
-- Params: $event_names_path (CSV: format, source_event, event_name).
-- Meaning: the canonical fields as text for sql/ingest/typed_events.sql. event_type view / cart /
--          remove_from_cart / purchase become view_item / add_to_cart / remove_from_cart / purchase
--          through the seed; user_session is the session id; price is the revenue of a purchase; the
--          event id is a hash of the whole row, so exact duplicate rows are loaded once.
with source as (
    select
        s._journeys_row as row_number,
        s.obj ->> 'event_time' as event_time,
        s.obj ->> 'event_type' as event_type,
        s.obj ->> 'product_id' as product_id,
        s.obj ->> 'category_id' as category_id,
        s.obj ->> 'category_code' as category_code,
        s.obj ->> 'brand' as brand,
        s.obj ->> 'price' as price,
        s.obj ->> 'user_id' as user_id,
        s.obj ->> 'user_session' as user_session
    from _ingest_src as s
    where s.obj is not null
),

event_names as (
    select
        lower(regexp_replace(trim(source_event), '[\s-]+', '_', 'g')) as source_key,
        event_name
    from read_csv($event_names_path, all_varchar = true, header = true)
    where format = 'rees46'
),

named as (
    select
        src.*,
        coalesce(en.event_name, src.event_type) as event_name
    from source as src
    left join event_names as en
        on lower(regexp_replace(trim(src.event_type), '[\s-]+', '_', 'g')) = en.source_key
),

final as (
    select
        row_number,
        md5(concat_ws(
            '|', coalesce(event_time, ''), coalesce(event_type, ''), coalesce(product_id, ''),
            coalesce(category_id, ''), coalesce(category_code, ''), coalesce(brand, ''), coalesce(price, ''),
            coalesce(user_id, ''), coalesce(user_session, '')
        )) as event_id,
        user_id,
        cast(null as varchar) as anonymous_id,
        user_session as session_id,
        event_time as ts,
        event_name,
        event_type as raw_event_name,
        cast(null as varchar) as source,
        cast(null as varchar) as medium,
        cast(null as varchar) as campaign,
        cast(null as varchar) as channel,
        cast(null as varchar) as page_url,
        cast(null as varchar) as referrer,
        product_id,
        case when event_name = 'purchase' then price end as revenue,
        cast(null as varchar) as currency,
        cast(null as varchar) as device,
        cast(null as varchar) as country,
        json_merge_patch('{}', json_object(
            'category_id', category_id,
            'category_code', category_code,
            'brand', brand,
            'price', coalesce(to_json(try_cast(price as decimal(18, 2))), to_json(price))
        )) as properties,
        cast(null as varchar) as ts_unit,
        cast(null as varchar) as dedupe_at
    from named
)

select * from final
