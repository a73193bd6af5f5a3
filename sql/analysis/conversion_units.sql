-- Grain: one row per unit of analysis: a session ($level = 'session') or a user ($level = 'user'),
--        for the sessions that start in the window [$start, $end).
-- Reads: staging.stg_sessions, staging.stg_touchpoints.
-- Params: $level ('session' | 'user'); $start, $end (timestamp, null = open bound);
--         $goal, $goal_kind ('event' | 'touchpoint'): the step that counts as conversion;
--         $cart_event, $checkout_event, $purchase_event (event names, default add_to_cart,
--             begin_checkout, purchase);
--         $window_days (double): user level, how many days after the user's first cart (checkout)
--             event a purchase still completes it.
-- Meaning: the unit's breakdown attributes (a session's own; a user's from their first session in
--          the window), visitor_type (session: 'new' when session_index = 1, else 'returning'; user:
--          'returning' when the user has had more than one session by the end of the window),
--          is_converted (a goal step in the unit's window sessions), and the cart and checkout
--          outcomes. Session level: the cart is completed when a purchase follows the session's first
--          add_to_cart in the same session. User level: when a purchase (in any session, also after
--          the window) follows the user's first add_to_cart in the window within $window_days.
--          is_cart_window_complete (is_checkout_window_complete): the data (its last event) reaches
--          cart_at + $window_days (always true for a session with a cart: the session is the window).
with sessions as not materialized (
    select *
    from staging.stg_sessions
    where ($start is null or started_at >= cast($start as timestamp))
        and ($end is null or started_at < cast($end as timestamp))
),

touchpoints as not materialized (
    select
        user_key,
        session_key,
        session_step_index,
        ts,
        is_channel_step,
        event_name,
        touchpoint,
        coalesce(case when $goal_kind = 'event' then event_name = $goal else touchpoint = $goal end, false)
            as is_goal_step
    from staging.stg_touchpoints
),

data_end as (
    select max(ts) as last_event_at from touchpoints
),

session_steps as (
    -- Only the steps these times read: a session without any has no row here (left joins below).
    -- 10M events, the same rows: every session's units 1.71-1.78 -> 1.22-1.24 s, every user's
    -- 2.09-2.12 -> 1.66-1.68 s (the entry touchpoint then a filter of its own); with the entry
    -- touchpoint read from stg_sessions, 1.20-1.32 -> 0.90-0.95 s and 1.71-1.80 -> 1.40-1.51 s.
    select
        t.session_key,
        min(t.ts) filter (where t.is_goal_step) as goal_at,
        min(t.ts) filter (where t.event_name = $cart_event) as cart_at,
        min(t.ts) filter (where t.event_name = $checkout_event) as checkout_at,
        max(t.ts) filter (where t.event_name = $purchase_event) as last_purchase_at
    from touchpoints as t
    inner join sessions as s on t.session_key = s.session_key
    where t.is_goal_step or t.event_name in ($cart_event, $checkout_event, $purchase_event)
    group by t.session_key
),

session_units as (
    select
        s.session_key as unit_id,
        s.user_key,
        s.started_at,
        s.channel,
        s.device,
        s.country,
        s.landing_page,
        s.entry_touchpoint,
        case when s.session_index = 1 then 'new' else 'returning' end as visitor_type,
        ss.goal_at is not null as is_converted,
        ss.cart_at,
        coalesce(ss.last_purchase_at >= ss.cart_at, false) as is_cart_completed,
        ss.checkout_at,
        coalesce(ss.last_purchase_at >= ss.checkout_at, false) as is_checkout_completed,
        ss.cart_at is not null as is_cart_window_complete,
        ss.checkout_at is not null as is_checkout_window_complete,
        s.n_purchases,
        s.revenue
    from sessions as s
    left join session_steps as ss on s.session_key = ss.session_key
),

user_firsts as (
    select
        s.user_key,
        min(s.started_at) as started_at,
        arg_min(s.channel, s.session_index) as channel,
        arg_min(s.device, s.session_index) as device,
        arg_min(s.country, s.session_index) as country,
        arg_min(s.landing_page, s.session_index) as landing_page,
        arg_min(s.entry_touchpoint, s.session_index) as entry_touchpoint,
        case when max(s.session_index) > 1 then 'returning' else 'new' end as visitor_type,
        bool_or(ss.goal_at is not null) as is_converted,
        min(ss.cart_at) as cart_at,
        min(ss.checkout_at) as checkout_at,
        sum(s.n_purchases) as n_purchases,
        sum(s.revenue) as revenue
    from sessions as s
    left join session_steps as ss on s.session_key = ss.session_key
    group by s.user_key
),

purchases as (
    select user_key, ts
    from touchpoints
    where event_name = $purchase_event
),

user_outcomes as (
    select
        u.user_key,
        count(p.ts) filter (
            where p.ts >= u.cart_at and epoch(p.ts) - epoch(u.cart_at) <= $window_days * 86400
        ) > 0 as is_cart_completed,
        count(p.ts) filter (
            where p.ts >= u.checkout_at and epoch(p.ts) - epoch(u.checkout_at) <= $window_days * 86400
        ) > 0 as is_checkout_completed
    from user_firsts as u
    left join purchases as p on u.user_key = p.user_key
    group by u.user_key
),

user_units as (
    select
        u.user_key as unit_id,
        u.user_key,
        u.started_at,
        u.channel,
        u.device,
        u.country,
        u.landing_page,
        u.entry_touchpoint,
        u.visitor_type,
        u.is_converted,
        u.cart_at,
        o.is_cart_completed,
        u.checkout_at,
        o.is_checkout_completed,
        coalesce(epoch(d.last_event_at) - epoch(u.cart_at) >= $window_days * 86400, false)
            as is_cart_window_complete,
        coalesce(epoch(d.last_event_at) - epoch(u.checkout_at) >= $window_days * 86400, false)
            as is_checkout_window_complete,
        u.n_purchases,
        u.revenue
    from user_firsts as u
    inner join user_outcomes as o on u.user_key = o.user_key
    cross join data_end as d
),

final as (
    select * from session_units where $level = 'session'
    union all
    select * from user_units where $level = 'user'
)

select * from final
