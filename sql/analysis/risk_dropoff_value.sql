-- Grain: one row per drop-off point (a node where non-converting journeys ended) of one level.
-- Reads: three frames registered for one request: risk_exits (node, n_dropoffs, n_journeys_through,
--        dropoff_rate: pipeline.paths.dropoffs), risk_edges (from_node, to_node, n_transitions: the
--        transition graph with the goal as a node) and risk_propensity (node, p_goal:
--        pipeline.value.markov.absorption of that graph).
-- Params: $level (varchar): the level the nodes are at, copied to the output;
--         $value_per_conversion (double): the value one more conversion brings.
-- Meaning: revenue at risk = n_dropoffs x p_conversion_if_continued x value_per_conversion.
--   p_conversion_if_continued is the conversion probability the leavers would have had had they taken
--   one more step instead of leaving: the propensity p_goal of the node they would have moved to,
--   averaged over the node's observed continuations (its out-edges other than path_end) weighted by
--   their counts; next_node is the most common continuation. A node nobody continued from is at 0.
with exits as (
    select node, n_dropoffs, n_journeys_through, dropoff_rate from risk_exits
),

continuations as (
    select
        e.from_node as node,
        e.to_node,
        e.n_transitions,
        coalesce(p.p_goal, 0) as p_goal
    from risk_edges as e
    left join risk_propensity as p on e.to_node = p.node
    where e.to_node <> 'path_end' and e.n_transitions > 0
),

continued as (
    select
        node,
        sum(n_transitions) as n_continued,
        sum(n_transitions * p_goal) / sum(n_transitions) as p_conversion_if_continued
    from continuations
    group by node
),

top_next as (
    select node, to_node as next_node
    from continuations
    qualify row_number() over (partition by node order by n_transitions desc, to_node) = 1
),

valued as (
    select
        $level as level,
        x.node,
        x.n_dropoffs,
        x.n_journeys_through,
        x.dropoff_rate,
        t.next_node,
        coalesce(c.p_conversion_if_continued, 0) as p_conversion_if_continued,
        x.n_dropoffs * coalesce(c.p_conversion_if_continued, 0) as expected_lost_conversions,
        cast($value_per_conversion as double) as value_per_conversion,
        x.n_dropoffs * coalesce(c.p_conversion_if_continued, 0) * cast($value_per_conversion as double)
            as revenue_at_risk
    from exits as x
    left join continued as c on x.node = c.node
    left join top_next as t on x.node = t.node
),

final as (
    select
        *,
        revenue_at_risk / nullif(sum(revenue_at_risk) over (), 0) as share_of_risk,
        rank() over (order by revenue_at_risk desc) as rank
    from valued
)

select * from final
order by rank, node
