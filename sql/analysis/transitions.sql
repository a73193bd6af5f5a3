-- Grain: one row per edge (from_node, to_node) of the transition graph.
-- Reads: journey_steps (temp table made from sql/analysis/journey_steps.sql for one request).
-- Params: $goal_node (varchar, or null): when given, every goal step becomes the node $goal_node
--             whatever the level (the chain of pipeline/value/risk.py: at the stage level this
--             separates the conversion from the rest of its stage, so an absorbing chain has a goal
--             to absorb into; at the touchpoint level with the goal `purchase` nothing changes);
--         $collapse_renamed (boolean): after that renaming, consecutive steps on one node count
--             once (a purchase right after checkout, both in stage Purchase, stays a step of its
--             own). Collapsing keeps each journey's first and last node, and the edges of the
--             collapsed journey are exactly its consecutive pairs of different nodes, so one lag
--             serves both cases: a repeat (node = previous node) is no edge when collapsing;
--         $count_users (boolean): count n_users (else null). Distinct users per edge are most of
--             this query's time over prepared journeys (10M events: 2.3-3.2 s with them, 1.5 s
--             without), and the Markov chain of revenue at risk reads only n_transitions.
-- Meaning: every consecutive pair of steps, plus path_start -> first step and last step -> path_end,
--          so that every real node has in-flow = out-flow. probability is the edge's share of its
--          from_node's out-edges; n_users counts distinct users who made the transition (when
--          $count_users).
with renamed as not materialized (
    select
        journey_id,
        user_key,
        idx,
        n_steps,
        case when $goal_node is not null and is_goal_step then $goal_node else node end as node
    from journey_steps
),

walked as (
    select
        user_key,
        node,
        lag(node) over (partition by journey_id order by idx) as previous_node
    from renamed
),

edges as not materialized (
    select user_key, coalesce(previous_node, 'path_start') as from_node, node as to_node
    from walked
    where not $collapse_renamed or previous_node is null or node <> previous_node
    union all
    select user_key, node as from_node, 'path_end' as to_node
    from renamed
    where idx = n_steps
),

counted as (
    -- one branch runs: DuckDB drops the branch whose constant condition is false, with its scan
    -- (edges is inlined into each); a filter on the distinct count itself still hashed every user
    select
        from_node,
        to_node,
        count(*) as n_transitions,
        count(distinct user_key) as n_users
    from edges
    where $count_users
    group by from_node, to_node
    union all
    select
        from_node,
        to_node,
        count(*) as n_transitions,
        null as n_users
    from edges
    where not $count_users
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
