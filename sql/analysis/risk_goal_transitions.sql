-- Grain: one row per edge (from_node, to_node) of the transition graph with the goal as a node.
-- Reads: journey_steps (temp table made from sql/analysis/journey_steps.sql for one request).
-- Params: $goal_node (varchar): the name the goal steps get;
--         $collapse_repeats (boolean): consecutive steps on one node count once (applied after the
--             goal steps are renamed, so a purchase right after checkout, both in stage Purchase,
--             stays a step of its own).
-- Meaning: the edges of sql/analysis/transitions.sql, except that every goal step becomes the node
--   $goal_node whatever the level. At the touchpoint level with the goal `purchase` (and until_goal)
--   this is exactly the transitions table; at the stage level it separates the conversion from the
--   rest of its stage (a purchase is in stage Purchase, like checkout), which an absorbing chain
--   needs to have a goal to absorb into.
with renamed as (
    select
        journey_id,
        user_key,
        idx,
        case when is_goal_step then $goal_node else node end as node
    from journey_steps
),

marked as (
    select
        *,
        lag(node) over (partition by journey_id order by idx) as previous_node
    from renamed
),

steps as (
    select
        journey_id,
        user_key,
        node,
        row_number() over (partition by journey_id order by idx) as idx,
        count(*) over (partition by journey_id) as n_steps
    from marked
    where not $collapse_repeats or previous_node is null or node <> previous_node
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
