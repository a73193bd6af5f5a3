-- Grain: one row per item (items[] entry) of every GA4 event loaded from the current file.
-- Reads: raw.events (the rows this file loaded: file_id = $file_id), scratch table _ingest_src.
-- Params: $file_id (the manifest id of the file being loaded).
-- Meaning: the side table raw.ga4_items, in its column order: the event's event_id, the item's
--          1-based position, its ids, names, categories, price, quantity and revenue. Items of
--          quarantined or duplicate events are not written (their events were not loaded).
with loaded as (
    select
        e.event_id,
        from_json(
            s.obj -> 'items',
            '[{"item_id": "VARCHAR", "item_name": "VARCHAR", "item_brand": "VARCHAR",
               "item_variant": "VARCHAR", "item_category": "VARCHAR", "item_category2": "VARCHAR",
               "item_category3": "VARCHAR", "item_category4": "VARCHAR", "item_category5": "VARCHAR",
               "price": "VARCHAR", "quantity": "VARCHAR", "item_revenue": "VARCHAR", "coupon": "VARCHAR",
               "affiliation": "VARCHAR", "item_list_name": "VARCHAR", "promotion_name": "VARCHAR"}]'
        ) as items
    from raw.events as e
    inner join _ingest_src as s on e.row_number = s._journeys_row
    where e.file_id = $file_id and json_type(s.obj -> 'items') = 'ARRAY'
),

unnested as (
    select
        event_id,
        unnest(items) as item,
        generate_subscripts(items, 1) as item_index
    from loaded
),

final as (
    select
        $file_id as file_id,
        event_id,
        cast(item_index as integer) as item_index,
        item.item_id as item_id,
        item.item_name as item_name,
        item.item_brand as item_brand,
        item.item_variant as item_variant,
        item.item_category as item_category,
        item.item_category2 as item_category2,
        item.item_category3 as item_category3,
        item.item_category4 as item_category4,
        item.item_category5 as item_category5,
        try_cast(item.price as decimal(18, 2)) as price,
        try_cast(try_cast(item.quantity as double) as bigint) as quantity,
        try_cast(item.item_revenue as decimal(18, 2)) as item_revenue,
        item.coupon as coupon,
        item.affiliation as affiliation,
        item.item_list_name as item_list_name,
        item.promotion_name as promotion_name
    from unnested
)

select * from final
