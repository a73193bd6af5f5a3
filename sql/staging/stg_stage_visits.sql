-- Grain: one row per stage visit: a run of consecutive steps in one stage of one user's journey
--        (user_key, entry_step_index).
-- Reads: staging.stg_touchpoints.
-- Params: none.
-- Meaning: channel steps are left out and steps without a stage order too, as in
--          sql/analysis/stage_moves.sql. entry_step_index is the user_step_index of the visit's first
--          step; seconds_in_stage the time from entering the stage to entering the next one (null for
--          the last visit of a journey). Kept per user (not in the mart) so that an incremental build
--          recomputes the two window passes only for the users new events touch;
--          the journey-map mart (sql/marts/mart_journey_map.sql) takes the median per stage from here.
with staged as (
    select user_key, user_step_index, ts, stage
    from staging.stg_touchpoints
    where stage_order is not null and not is_channel_step
),

runs as (
    select *
    from (
        select
            *,
            lag(stage) over (partition by user_key order by ts, user_step_index) as previous_stage
        from staged
    )
    where previous_stage is null or stage <> previous_stage
),

final as (
    select
        user_key,
        user_step_index as entry_step_index,
        stage,
        epoch(lead(ts) over (partition by user_key order by ts, user_step_index)) - epoch(ts) as seconds_in_stage
    from runs
)

select * from final
