-- Grain: one row per abandonment kind ('cart', 'checkout') and breakdown group ($by).
-- Reads: metric_units (temp table of conversion_units.sql), metric_segment_members (temp table:
--        segment, user_key; used when $by = 'segment').
-- Params: $by: as in conversion_rates.sql; the time groups ('day', 'week', 'month') are taken at
--             the unit's first cart (checkout) event, so a cart counts on the day it was created.
--         $complete_windows_only (boolean): user level, leave out units whose purchase window is
--             not yet covered by the data (n_incomplete_window counts them either way).
-- Meaning: a unit with a cart (checkout) event is an episode; it is abandoned when no purchase
--          completes it (see conversion_units.sql for the window at each level).
with units as (
    select * from metric_units
),

episodes as (
    select
        unit_id,
        user_key,
        'cart' as abandonment_kind,
        cart_at as episode_at,
        not is_cart_completed as is_abandoned,
        is_cart_window_complete as is_window_complete,
        channel,
        device,
        country,
        landing_page,
        entry_touchpoint,
        visitor_type
    from units
    where cart_at is not null
    union all
    select
        unit_id,
        user_key,
        'checkout' as abandonment_kind,
        checkout_at as episode_at,
        not is_checkout_completed as is_abandoned,
        is_checkout_window_complete as is_window_complete,
        channel,
        device,
        country,
        landing_page,
        entry_touchpoint,
        visitor_type
    from units
    where checkout_at is not null
),

grouped as (
    select
        abandonment_kind,
        coalesce(
            case $by
                when 'all' then 'all'
                when 'channel' then channel
                when 'device' then device
                when 'country' then country
                when 'landing_page' then landing_page
                when 'entry_touchpoint' then entry_touchpoint
                when 'visitor_type' then visitor_type
                when 'day' then strftime(episode_at, '%Y-%m-%d')
                when 'week' then strftime(date_trunc('week', episode_at), '%Y-%m-%d')
                when 'month' then strftime(episode_at, '%Y-%m')
            end,
            'unknown'
        ) as group_value,
        is_abandoned,
        is_window_complete
    from episodes
    where $by <> 'segment'
    union all
    select
        e.abandonment_kind,
        m.segment as group_value,
        e.is_abandoned,
        e.is_window_complete
    from episodes as e
    inner join metric_segment_members as m on e.user_key = m.user_key
    where $by = 'segment'
),

final as (
    select
        abandonment_kind,
        group_value,
        count(*) filter (where is_window_complete or not $complete_windows_only) as n_started,
        count(*) filter (where is_abandoned and (is_window_complete or not $complete_windows_only))
            as n_abandoned,
        count(*) filter (where not is_window_complete) as n_incomplete_window
    from grouped
    group by abandonment_kind, group_value
)

select * from final
