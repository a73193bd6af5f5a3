-- Grain: one row per converting journey (per user when the journeys are built at user scope).
-- Reads: journey_steps (temp table for one request), staging.stg_users.
-- Params: none.
-- Meaning: effort before the first goal step: n_touchpoints = steps before it, n_sessions and
--          n_channels = distinct sessions and channels up to and including it, days_to_goal =
--          days from the journey's first step to it; with the user's acquisition channel.
with steps as (
    select * from journey_steps where is_converted
),

goals as (
    select
        journey_id,
        any_value(user_key) as user_key,
        min(idx) filter (where is_goal_step) as goal_idx,
        min(ts) filter (where is_goal_step) as goal_at,
        min(ts) as first_at
    from steps
    group by journey_id
),

effort as (
    select
        g.journey_id,
        g.user_key,
        count(*) filter (where s.idx < g.goal_idx) as n_touchpoints,
        count(distinct s.session_key) as n_sessions,
        count(distinct s.channel) as n_channels,
        (epoch(any_value(g.goal_at)) - epoch(any_value(g.first_at))) / 86400.0 as days_to_goal
    from goals as g
    inner join steps as s on g.journey_id = s.journey_id and s.idx <= g.goal_idx
    group by g.journey_id, g.user_key
),

final as (
    select
        e.*,
        u.acquisition_channel
    from effort as e
    left join staging.stg_users as u on e.user_key = u.user_key
)

select * from final
order by journey_id
