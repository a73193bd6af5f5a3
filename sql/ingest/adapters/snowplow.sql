-- Grain: one row per parsed record of a Snowplow enriched-event file being loaded (the 131-column
--        TSV of the canonical event model, or the Analytics SDK's JSON with the same field names).
-- Reads: scratch table _ingest_src (_journeys_row, line, obj: the event as a JSON object; TSV
--        columns are named by pipeline/ingest/adapters.py SNOWPLOW_COLUMNS), the event-name seed.
-- Params: $event_names_path (CSV: format, source_event, event_name).
-- Meaning: the canonical fields as text for sql/ingest/typed_events.sql. event_id is Snowplow's;
--          dedupe_at = collector_tstamp, so of several rows with one event_id the earliest collected
--          is kept. Event time is derived_tstamp (collector_tstamp when absent). Structured events
--          are named by se_action, other events by event_name (else event), then the seed
--          (transaction -> purchase). Source/medium/campaign come from mkt_* when any is set, else
--          from refr_source/refr_medium unless the referrer is internal. tr_total is the revenue of
--          a purchase (se_value for a structured purchase). IP address, fingerprint, user agent and
--          the context JSON are not stored.
with source as (
    select
        s._journeys_row as row_number,
        s.obj ->> 'event_id' as event_id,
        s.obj ->> 'app_id' as app_id,
        s.obj ->> 'platform' as platform,
        s.obj ->> 'collector_tstamp' as collector_tstamp,
        s.obj ->> 'dvce_created_tstamp' as dvce_created_tstamp,
        s.obj ->> 'derived_tstamp' as derived_tstamp,
        s.obj ->> 'event' as event,
        s.obj ->> 'event_name' as sp_event_name,
        s.obj ->> 'event_vendor' as event_vendor,
        s.obj ->> 'user_id' as user_id,
        s.obj ->> 'domain_userid' as domain_userid,
        s.obj ->> 'domain_sessionid' as domain_sessionid,
        s.obj ->> 'domain_sessionidx' as domain_sessionidx,
        s.obj ->> 'network_userid' as network_userid,
        s.obj ->> 'geo_country' as geo_country,
        s.obj ->> 'geo_region' as geo_region,
        s.obj ->> 'geo_city' as geo_city,
        s.obj ->> 'page_url' as page_url,
        s.obj ->> 'page_title' as page_title,
        s.obj ->> 'page_referrer' as page_referrer,
        s.obj ->> 'refr_medium' as refr_medium,
        s.obj ->> 'refr_source' as refr_source,
        s.obj ->> 'refr_term' as refr_term,
        s.obj ->> 'mkt_medium' as mkt_medium,
        s.obj ->> 'mkt_source' as mkt_source,
        s.obj ->> 'mkt_term' as mkt_term,
        s.obj ->> 'mkt_content' as mkt_content,
        s.obj ->> 'mkt_campaign' as mkt_campaign,
        s.obj ->> 'mkt_clickid' as mkt_clickid,
        s.obj ->> 'mkt_network' as mkt_network,
        s.obj ->> 'se_category' as se_category,
        s.obj ->> 'se_action' as se_action,
        s.obj ->> 'se_label' as se_label,
        s.obj ->> 'se_property' as se_property,
        s.obj ->> 'se_value' as se_value,
        s.obj ->> 'tr_orderid' as tr_orderid,
        s.obj ->> 'tr_affiliation' as tr_affiliation,
        s.obj ->> 'tr_total' as tr_total,
        s.obj ->> 'tr_tax' as tr_tax,
        s.obj ->> 'tr_shipping' as tr_shipping,
        s.obj ->> 'tr_currency' as tr_currency,
        s.obj ->> 'ti_orderid' as ti_orderid,
        s.obj ->> 'ti_sku' as ti_sku,
        s.obj ->> 'ti_name' as ti_name,
        s.obj ->> 'ti_category' as ti_category,
        s.obj ->> 'ti_price' as ti_price,
        s.obj ->> 'ti_quantity' as ti_quantity,
        s.obj ->> 'ti_currency' as ti_currency,
        s.obj ->> 'dvce_type' as dvce_type,
        s.obj ->> 'dvce_ismobile' as dvce_ismobile,
        coalesce(
            -- TSV: the self-describing event is JSON text in one column
            case
                when json_valid(s.obj ->> 'unstruct_event')
                    then json_extract_string(s.obj ->> 'unstruct_event', '$.data.data.sku')
            end,
            -- Analytics SDK JSON: the same event shredded into its own key
            s.obj ->> '$.unstruct_event_com_snowplowanalytics_snowplow_add_to_cart_1.sku',
            s.obj ->> '$.unstruct_event_com_snowplowanalytics_snowplow_remove_from_cart_1.sku'
        ) as unstruct_sku
    from _ingest_src as s
    where s.obj is not null
),

event_names as (
    select
        lower(regexp_replace(trim(source_event), '[\s-]+', '_', 'g')) as source_key,
        event_name
    from read_csv($event_names_path, all_varchar = true, header = true)
    where format = 'snowplow'
),

keyed as (
    select
        *,
        case when event = 'struct' then se_action else coalesce(sp_event_name, event) end as name_key,
        coalesce(mkt_source, mkt_medium, mkt_campaign) is not null as has_mkt,
        coalesce(refr_medium, '') <> 'internal' as is_external_referrer
    from source
),

named as (
    select
        k.*,
        coalesce(en.event_name, k.name_key) as event_name
    from keyed as k
    left join event_names as en
        on lower(regexp_replace(trim(k.name_key), '[\s-]+', '_', 'g')) = en.source_key
),

final as (
    select
        row_number,
        event_id,
        user_id,
        domain_userid as anonymous_id,
        domain_sessionid as session_id,
        coalesce(derived_tstamp, collector_tstamp) as ts,
        event_name,
        name_key as raw_event_name,
        case when has_mkt then mkt_source when is_external_referrer then refr_source end as source,
        case when has_mkt then mkt_medium when is_external_referrer then refr_medium end as medium,
        mkt_campaign as campaign,
        cast(null as varchar) as channel,
        page_url,
        page_referrer as referrer,
        coalesce(ti_sku, unstruct_sku) as product_id,
        case when event_name = 'purchase' then coalesce(tr_total, se_value) end as revenue,
        coalesce(tr_currency, ti_currency) as currency,
        case
            when lower(dvce_type) = 'computer' then 'desktop'
            when lower(dvce_type) in ('mobile', 'tablet') then lower(dvce_type)
            when lower(dvce_ismobile) in ('1', 'true') then 'mobile'
            when lower(dvce_ismobile) in ('0', 'false') then 'desktop'
        end as device,
        geo_country as country,
        json_merge_patch('{}', json_object(
            'app_id', app_id,
            'platform', platform,
            'event', event,
            'event_vendor', event_vendor,
            'collector_tstamp', collector_tstamp,
            'dvce_created_tstamp', dvce_created_tstamp,
            'domain_sessionidx', domain_sessionidx,
            'network_userid', network_userid,
            'page_title', page_title,
            'se_category', se_category,
            'se_label', se_label,
            'se_property', se_property,
            'se_value', se_value,
            'tr_orderid', tr_orderid,
            'tr_affiliation', tr_affiliation,
            'tr_tax', tr_tax,
            'tr_shipping', tr_shipping,
            'ti_orderid', ti_orderid,
            'ti_name', ti_name,
            'ti_category', ti_category,
            'ti_price', ti_price,
            'ti_quantity', ti_quantity,
            'refr_source', refr_source,
            'refr_medium', refr_medium,
            'refr_term', refr_term,
            'mkt_term', mkt_term,
            'mkt_content', mkt_content,
            'mkt_clickid', mkt_clickid,
            'mkt_network', mkt_network,
            'geo_region', geo_region,
            'geo_city', geo_city
        )) as properties,
        cast(null as varchar) as ts_unit,
        collector_tstamp as dedupe_at
    from named
)

select * from final
