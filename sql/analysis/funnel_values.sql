-- Grain: one row per distinct (event_name, touchpoint, stage) combination in the journeys.
-- Reads: staging.stg_touchpoints.
-- Params: none.
-- Meaning: the values a funnel step can name (event names, touchpoints, stages); the funnel
--          resolves and checks its steps against them before running.
with touchpoints as (
    select event_name, touchpoint, stage from staging.stg_touchpoints
),

final as (
    select distinct
        event_name,
        touchpoint,
        stage
    from touchpoints
)

select * from final
