-- Grain: one row per journey key (user_key, after identity stitching).
-- Reads: staging.stg_sessions.
-- Params: none.
-- Meaning: first and last seen, sessions, acquisition (first session's channel and device),
--          first purchase, purchases and revenue; entry_touchpoint, the touchpoint of the user's
--          first event (the first session's entry touchpoint: the first thing they did). Kept here,
--          per user, so that an incremental build computes it only for the users new events touch.
with sessions as (
    select * from staging.stg_sessions
),

totals as (
    select
        user_key,
        min(started_at) as first_seen_at,
        max(ended_at) as last_seen_at,
        count(*) as n_sessions,
        sum(n_events) as n_events,
        arg_min(channel, session_index) as acquisition_channel,
        arg_min(device, session_index) as first_device,
        arg_min(country, session_index) as first_country,
        min(started_at) filter (where has_purchase) as first_purchase_session_at,
        sum(n_purchases) as n_purchases,
        sum(revenue) as revenue,
        sum(n_purchases) > 0 as is_customer,
        arg_min(entry_touchpoint, session_index) as entry_touchpoint
    from sessions
    group by user_key
),

final as (
    select * from totals
)

select * from final
