-- Grain: one row per edge (from_node, to_node) of the transition graph.
-- Reads: journey_steps (temp table made from sql/analysis/journey_steps.sql for one request).
-- Params: none.
-- Meaning: every consecutive pair of steps, plus path_start -> first step and last step -> path_end,
--          so that every real node has in-flow = out-flow. probability is the edge's share of its
--          from_node's out-edges; n_users counts distinct users who made the transition.
with steps as (
    select journey_id, user_key, idx, n_steps, node from journey_steps
),

edges as (
    select
        user_key,
        coalesce(lag(node) over (partition by journey_id order by idx), 'path_start') as from_node,
        node as to_node
    from steps
    union all
    select user_key, node as from_node, 'path_end' as to_node
    from steps
    where idx = n_steps
),

counted as (
    select
        from_node,
        to_node,
        count(*) as n_transitions,
        count(distinct user_key) as n_users
    from edges
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
