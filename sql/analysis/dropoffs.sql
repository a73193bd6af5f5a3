-- Grain: one row per node where at least one non-converting journey ended.
-- Reads: journey_steps (temp table for one request).
-- Params: none.
-- Meaning: n_dropoffs = journeys that end at the node without reaching the goal; n_journeys_through
--          = journeys that visit the node; dropoff_rate = n_dropoffs / n_journeys_through;
--          share_of_dropoffs = this node's part of all drop-offs; top_previous = the three most
--          common nodes just before the exit, with their share of this node's drop-offs.
with exits as (
    -- the last step of each non-converting journey and the step before it (a join of the two
    -- small sets, not a window over every step)
    select e.node, coalesce(p.node, 'path_start') as previous_node
    from journey_steps as e
    left join (select journey_id, node from journey_steps where idx = n_steps - 1) as p
        on e.journey_id = p.journey_id
    where e.idx = e.n_steps and not e.is_converted
),

through as (
    select node, count(distinct journey_id) as n_journeys_through
    from journey_steps
    group by node
),

previous_counts as (
    select node, previous_node, count(*) as n
    from exits
    group by node, previous_node
),

previous_ranked as (
    select
        node,
        string_agg(
            previous_node || ' ' || cast(round(100.0 * n / total, 1) as varchar) || '%', ', '
            order by n desc, previous_node
        ) filter (where rank <= 3) as top_previous
    from (
        select
            *,
            sum(n) over (partition by node) as total,
            row_number() over (partition by node order by n desc, previous_node) as rank
        from previous_counts
    )
    group by node
),

counted as (
    select node, count(*) as n_dropoffs
    from exits
    group by node
),

final as (
    select
        c.node,
        c.n_dropoffs,
        t.n_journeys_through,
        c.n_dropoffs / t.n_journeys_through as dropoff_rate,
        c.n_dropoffs / sum(c.n_dropoffs) over () as share_of_dropoffs,
        p.top_previous
    from counted as c
    inner join through as t on c.node = t.node
    left join previous_ranked as p on c.node = p.node
)

select * from final
order by n_dropoffs desc, node
