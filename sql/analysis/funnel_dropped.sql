-- Grain: one row per journey (user_key, or session_key with its user_key) that dropped at step $step.
-- Reads: funnel_units (a temp table pipeline.metrics.funnel makes from sql/analysis/funnel_units.sql).
-- Params: $step (1-based step number, below the last step).
-- Meaning: the drill-down behind n_dropped: journeys (any of whose attempts, when counting
--          conversions) entered step $step and did not continue into step $step + 1. group_value
--          is the breakdown group (null without one). Sorted by key, so exports are stable.
with units as (
    select * from funnel_units
),

dropped as (
    select
        journey_key,
        user_key,
        group_value
    from units
    where reached[$step] and not coalesce(continued[$step + 1], false)
),

final as (
    select distinct
        journey_key,
        user_key,
        group_value
    from dropped
)

select * from final order by journey_key, group_value
