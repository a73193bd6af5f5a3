-- Grain: one row per sub-path (n-gram of 2 to 4 consecutive nodes).
-- Reads: journey_steps (temp table for one request, built with until_goal so that a converting
--        journey ends at its first goal step).
-- Params: none.
-- Meaning: counts of journeys containing the sub-path before the goal: converting journeys use
--          their steps before the goal step, the others all their steps. Presence, not frequency.
with steps as (
    select journey_id, is_converted, idx, node
    from journey_steps
    where not (is_converted and is_goal_step)
),

grams as (
    select
        journey_id,
        is_converted,
        node || ' > ' || lead(node, 1) over by_journey as gram_2,
        node || ' > ' || lead(node, 1) over by_journey || ' > ' || lead(node, 2) over by_journey as gram_3,
        node || ' > ' || lead(node, 1) over by_journey || ' > ' || lead(node, 2) over by_journey
            || ' > ' || lead(node, 3) over by_journey as gram_4
    from steps
    window by_journey as (partition by journey_id order by idx)
),

long_grams as (
    select distinct journey_id, is_converted, ngram, n
    from (
        select journey_id, is_converted, gram_2 as ngram, 2 as n from grams
        union all
        select journey_id, is_converted, gram_3 as ngram, 3 as n from grams
        union all
        select journey_id, is_converted, gram_4 as ngram, 4 as n from grams
    )
    where ngram is not null
),

final as (
    select
        ngram,
        n,
        count(*) filter (where is_converted) as n_converted_with,
        count(*) filter (where not is_converted) as n_abandoned_with
    from long_grams
    group by ngram, n
)

select * from final
