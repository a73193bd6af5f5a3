-- Grain: one row per loop A > B > A (A different from B) seen in the journeys.
-- Reads: journey_steps (temp table for one request).
-- Params: none.
-- Meaning: n_loops counts occurrences, n_journeys the journeys with at least one, conversion_rate
--          the share of those journeys that reached the goal.
with steps as (
    select
        journey_id,
        is_converted,
        node,
        lag(node, 1) over by_journey as previous_node,
        lag(node, 2) over by_journey as node_before_previous
    from journey_steps
    window by_journey as (partition by journey_id order by idx)
),

loops as (
    select journey_id, is_converted, node as loop_node, previous_node as via_node
    from steps
    where node_before_previous = node and previous_node <> node
),

final as (
    select
        loop_node || ' > ' || via_node || ' > ' || loop_node as loop_path,
        loop_node,
        via_node,
        count(*) as n_loops,
        count(distinct journey_id) as n_journeys,
        count(distinct journey_id) filter (where is_converted) / count(distinct journey_id) as conversion_rate
    from loops
    group by loop_node, via_node
)

select * from final
order by n_loops desc, loop_path
