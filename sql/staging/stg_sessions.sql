-- Grain: one row per session (session_key).
-- Reads: staging.stg_events.
-- Params: none.
-- Meaning: session start/end, duration, event count, the entry event's source/medium/campaign/
--          channel/device/country (the session's acquisition), landing and exit page, purchases.
with events as (
    select
        session_key,
        user_key,
        session_index,
        session_event_index,
        source_session_id,
        ts,
        event_name,
        revenue,
        source,
        medium,
        campaign,
        channel,
        device,
        country,
        page_url
    from staging.stg_events
),

totals as (
    -- One pass over the events; the entry fields are those of the session's first event (the max
    -- of one row), its nulls included.
    select
        session_key,
        any_value(user_key) as user_key,
        any_value(session_index) as session_index,
        -- the source session of the first event that has one (any_value would be arbitrary when an
        -- inactivity session spans several source sessions, and differ between engines)
        arg_min(source_session_id, session_event_index) filter (where source_session_id is not null)
            as source_session_id,
        min(ts) as started_at,
        max(ts) as ended_at,
        count(*) as n_events,
        count(*) filter (where event_name = 'purchase') as n_purchases,
        coalesce(sum(revenue) filter (where event_name = 'purchase'), 0) as revenue,
        max(source) filter (where session_event_index = 1) as entry_source,
        max(medium) filter (where session_event_index = 1) as entry_medium,
        max(campaign) filter (where session_event_index = 1) as entry_campaign,
        max(channel) filter (where session_event_index = 1) as channel,
        max(device) filter (where session_event_index = 1) as device,
        max(country) filter (where session_event_index = 1) as country,
        arg_min(page_url, session_event_index) filter (where page_url is not null) as landing_page,
        arg_max(page_url, session_event_index) filter (where page_url is not null) as exit_page
    from events
    group by session_key
),

final as (
    select
        session_key,
        user_key,
        session_index,
        source_session_id,
        started_at,
        ended_at,
        epoch(ended_at) - epoch(started_at) as duration_seconds,
        n_events,
        entry_source,
        entry_medium,
        entry_campaign,
        channel,
        device,
        country,
        landing_page,
        exit_page,
        n_purchases,
        n_purchases > 0 as has_purchase,
        revenue
    from totals
)

select * from final
