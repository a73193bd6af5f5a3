-- Grain: one row per breakdown group (null when there is no breakdown) and funnel step.
-- Reads: funnel_units (a temp table pipeline.metrics.funnel makes from sql/analysis/funnel_units.sql:
--        one row per unit with per-step lists reached, continued, from_first,
--        seconds_from_previous, seconds_from_first).
-- Params: $n_steps,
--         $units_are_entities (boolean): each unit is its own counted entity, which is every
--           request but users counted over session journeys (the caller decides). Then the units
--           are counted as they are; otherwise each user's units are merged first by a group by
--           of every unit and step (the report's two funnels spent 0.9 and 2.2 s in it at 10M
--           events, 10.2 and 33.4 s at 100M, against 0.2 and 0.4 s, 1.9 and 3.7 s without).
-- Meaning: the counts behind every funnel rate. The counted entity is the unit (a user or session
--          journey, or an attempt when counting conversions), or, counting users over session
--          journeys, the user:
--          a user is at a step when any of their units is, and their times are those of their
--          earliest unit at that step.
--          n_entered: at step k. n_previous / n_moved_on: at step k-1 / at k-1 and continued into k
--          (step 1: at step 1). n_first / n_from_first: at step 1 / at step 1 and reached k from
--          it. n_dropped: at step k and did not continue into k+1 (0 at the last step).
--          Time quantiles (0.25, 0.5, 0.75, 0.9) in seconds over the entities at step k.
with units as (
    select * from funnel_units
),

step_numbers as (
    select unnest(range(1, $n_steps + 1)) as step_index
),

unit_steps as (
    select
        u.group_value,
        u.user_key,
        u.started_us,
        s.step_index,
        u.reached[s.step_index] as is_at_step,
        u.reached[greatest(s.step_index - 1, 1)] as is_at_previous,
        case
            when s.step_index = 1 then u.reached[1]
            else u.reached[s.step_index - 1] and u.continued[s.step_index]
        end as is_moved_on,
        u.reached[1] as is_at_first,
        u.reached[1] and u.from_first[s.step_index] as is_from_first,
        u.reached[s.step_index] and coalesce(u.continued[s.step_index + 1], false) as is_moving_on,
        u.seconds_from_previous[s.step_index] as seconds_from_previous,
        u.seconds_from_first[s.step_index] as seconds_from_first
    from units as u
    cross join step_numbers as s
),

entity_steps as (
    select
        group_value,
        step_index,
        is_at_step,
        is_at_previous,
        is_moved_on,
        is_at_first,
        is_from_first,
        is_moving_on,
        case when is_at_step then seconds_from_previous end as seconds_from_previous,
        case when is_at_step then seconds_from_first end as seconds_from_first
    from unit_steps
    where $units_are_entities
    union all
    -- users over session journeys: a user is at a step when any of their sessions is
    select
        group_value,
        step_index,
        bool_or(is_at_step) as is_at_step,
        bool_or(is_at_previous) as is_at_previous,
        bool_or(is_moved_on) as is_moved_on,
        bool_or(is_at_first) as is_at_first,
        bool_or(is_from_first) as is_from_first,
        bool_or(is_moving_on) as is_moving_on,
        arg_min(seconds_from_previous, started_us) filter (where is_at_step) as seconds_from_previous,
        arg_min(seconds_from_first, started_us) filter (where is_at_step) as seconds_from_first
    from unit_steps
    where not $units_are_entities
    group by group_value, user_key, step_index
),

final as (
    select
        group_value,
        step_index,
        count(*) filter (where is_at_step) as n_entered,
        count(*) filter (where is_at_previous) as n_previous,
        count(*) filter (where is_moved_on) as n_moved_on,
        count(*) filter (where is_at_first) as n_first,
        count(*) filter (where is_from_first) as n_from_first,
        case
            when step_index = $n_steps then 0
            else count(*) filter (where is_at_step and not is_moving_on)
        end as n_dropped,
        quantile_cont(seconds_from_previous, [0.25, 0.5, 0.75, 0.9]) as quantiles_from_previous,
        quantile_cont(seconds_from_first, [0.25, 0.5, 0.75, 0.9]) as quantiles_from_first
    from entity_steps
    group by group_value, step_index
)

select * from final order by group_value nulls first, step_index
