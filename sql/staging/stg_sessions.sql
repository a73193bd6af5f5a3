-- Grain: one row per session (session_key).
-- Reads: staging.stg_events.
-- Params: none.
-- Meaning: session start/end, duration, event count, the entry event's source/medium/campaign/
--          channel/device/country (the session's acquisition), landing and exit page, purchases.
with events as (
    select * from staging.stg_events
),

entries as (
    select
        session_key,
        source as entry_source,
        medium as entry_medium,
        campaign as entry_campaign,
        channel,
        device,
        country
    from events
    where session_event_index = 1
),

pages as (
    select
        session_key,
        arg_min(page_url, session_event_index) as landing_page,
        arg_max(page_url, session_event_index) as exit_page
    from events
    where page_url is not null
    group by session_key
),

totals as (
    select
        session_key,
        any_value(user_key) as user_key,
        any_value(session_index) as session_index,
        -- the source session of the first event that has one (any_value would be arbitrary when an
        -- inactivity session spans several source sessions, and differ between engines)
        arg_min(source_session_id, session_event_index) as source_session_id,
        min(ts) as started_at,
        max(ts) as ended_at,
        count(*) as n_events,
        count(*) filter (where event_name = 'purchase') as n_purchases,
        coalesce(sum(revenue) filter (where event_name = 'purchase'), 0) as revenue
    from events
    group by session_key
),

final as (
    select
        t.session_key,
        t.user_key,
        t.session_index,
        t.source_session_id,
        t.started_at,
        t.ended_at,
        epoch(t.ended_at) - epoch(t.started_at) as duration_seconds,
        t.n_events,
        e.entry_source,
        e.entry_medium,
        e.entry_campaign,
        e.channel,
        e.device,
        e.country,
        p.landing_page,
        p.exit_page,
        t.n_purchases,
        t.n_purchases > 0 as has_purchase,
        t.revenue
    from totals as t
    inner join entries as e on t.session_key = e.session_key
    left join pages as p on t.session_key = p.session_key
)

select * from final
