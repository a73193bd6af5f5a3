-- Grain: one row per loop A > B > A (of the $top loops seen in the most journeys) and device.
-- Reads: journey_steps (temp table for one request; session journeys, so journey_id is a
--        session_key), staging.stg_sessions (the session's device).
-- Params: $top (integer): how many loops, the most journeys first (then occurrences, then path).
-- Meaning: n_sessions_at_node counts the device's sessions with a step at the loop's start node A,
--          n_sessions_looping those of them with the loop, loop_share the second over the first.
--          The loops are found by one pass over the steps (the same lags as loops.sql); visits need
--          no order, so they read the steps directly.
with steps as (
    select
        journey_id,
        node,
        lag(node, 1) over by_journey as previous_node,
        lag(node, 2) over by_journey as node_before_previous
    from journey_steps
    window by_journey as (partition by journey_id order by idx)
),

loop_steps as (
    select journey_id, node as loop_node, previous_node as via_node
    from steps
    where node_before_previous = node and previous_node <> node
),

top_loops as (
    select
        loop_node,
        via_node,
        loop_node || ' > ' || via_node || ' > ' || loop_node as loop_path
    from loop_steps
    group by loop_node, via_node
    order by count(distinct journey_id) desc, count(*) desc, loop_path
    limit $top
),

looping as (
    select t.loop_path, coalesce(s.device, 'unknown') as device, count(distinct l.journey_id) as n_sessions_looping
    from loop_steps as l
    inner join top_loops as t on l.loop_node = t.loop_node and l.via_node = t.via_node
    inner join staging.stg_sessions as s on l.journey_id = s.session_key
    group by t.loop_path, coalesce(s.device, 'unknown')
),

visiting as (
    -- Sessions at each start node once, however many of the top loops start there.
    select v.node, coalesce(s.device, 'unknown') as device, count(*) as n_sessions_at_node
    from (
        select distinct journey_id, node
        from journey_steps
        where node in (select loop_node from top_loops)
    ) as v
    inner join staging.stg_sessions as s on v.journey_id = s.session_key
    group by v.node, coalesce(s.device, 'unknown')
),

final as (
    select
        t.loop_path,
        v.device,
        v.n_sessions_at_node,
        coalesce(l.n_sessions_looping, 0) as n_sessions_looping,
        coalesce(l.n_sessions_looping, 0) / v.n_sessions_at_node as loop_share
    from top_loops as t
    inner join visiting as v on t.loop_node = v.node
    left join looping as l on t.loop_path = l.loop_path and v.device = l.device
)

select * from final
order by loop_path, device
