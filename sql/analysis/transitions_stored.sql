-- Grain: one row per edge (from_node, to_node) of the transition graph, as transitions.sql.
-- Reads: staging.stg_touchpoints (no journey_steps preparation).
-- Params: $scope ('session' | 'user'), $level ('event' | 'touchpoint' | 'stage'): as journey_steps.sql.
-- Meaning: the edges of sql/analysis/transitions.sql for journeys asked for without cleaning (no
--          renaming, exclusions, collapsing, cuts at the goal or first / last N): then every stored
--          step is a journey step, in stored order, and the edges need only three narrow columns.
--          pipeline/paths.py takes this route for those requests; preparing journey_steps copies
--          every step's wide row first (6.1 of 9.9 s at 10M events). A test requires the same rows
--          as transitions.sql on prepared journeys for every scope and level.
--          path_end follows each journey's last step (no next step), so no journey length is needed.
--          The counting (per_user, counted, final) gives transitions.sql's numbers; the test above
--          keeps the two in step.
with steps as (
    select
        case when $scope = 'user' then user_key else session_key end as journey_id,
        user_key,
        -- steps are numbered without gaps in the user and in the session; at event level the channel
        -- steps leave gaps, which a lag over the order does not mind
        case when $scope = 'user' then user_step_index else session_step_index end as step_index,
        case $level when 'event' then event_name when 'touchpoint' then touchpoint else stage end as node
    from staging.stg_touchpoints
    where $level <> 'event' or not is_channel_step
),

walked as (
    select
        user_key,
        coalesce(lag(node) over journey_order, 'path_start') as from_node,
        node as to_node,
        lead(step_index) over journey_order is null as is_last
    from steps
    window journey_order as (partition by journey_id order by step_index)
),

edges as (
    select user_key, from_node, to_node from walked
    union all
    select user_key, to_node as from_node, 'path_end' as to_node from walked where is_last
),

per_user as (
    -- Counted per user first, then per edge: n_users is the number of an edge's user rows. On the
    -- stored steps, in user order, that beats count(distinct user_key) per edge (user scope,
    -- touchpoint level: 3.4 -> 2.7 s at 10M events, 39.4 -> 33.8 s at 100M). transitions.sql
    -- keeps count(distinct): over prepared journeys, in no order, two aggregates were 8-12% slower.
    select
        from_node,
        to_node,
        user_key,
        count(*) as n_transitions
    from edges
    group by from_node, to_node, user_key
),

counted as (
    select
        from_node,
        to_node,
        cast(sum(n_transitions) as bigint) as n_transitions,  -- a sum is HUGEINT in DuckDB
        count(*) as n_users
    from per_user
    group by from_node, to_node
),

final as (
    select
        from_node,
        to_node,
        n_transitions,
        n_users,
        n_transitions / sum(n_transitions) over (partition by from_node) as probability
    from counted
)

select * from final
order by from_node, n_transitions desc, to_node
