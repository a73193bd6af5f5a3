-- Grain: one row per move between two different stages inside a journey.
-- Reads: journey_steps (temp table for one request).
-- Params: none.
-- Meaning: consecutive runs of one stage collapse to one visit; channel steps and unmapped events
--          are left out (a returning visitor's new session is not a step back). seconds_in_stage is
--          the time from entering from_stage to entering to_stage; is_backward marks a move to an
--          earlier stage. The journey's last visit is a move to path_end.
with steps as (
    select journey_id, user_key, idx, ts, stage, stage_order, is_converted
    from journey_steps
    where not is_channel_step and stage_order is not null
),

runs as (
    select *
    from (
        select *, lag(stage) over (partition by journey_id order by idx) as previous_stage
        from steps
    )
    where previous_stage is null or stage <> previous_stage
),

final as (
    select
        journey_id,
        user_key,
        is_converted,
        stage as from_stage,
        stage_order as from_stage_order,
        coalesce(lead(stage) over by_journey, 'path_end') as to_stage,
        lead(stage_order) over by_journey as to_stage_order,
        coalesce(lead(stage_order) over by_journey < stage_order, false) as is_backward,
        epoch(lead(ts) over by_journey) - epoch(ts) as seconds_in_stage
    from runs
    window by_journey as (partition by journey_id order by idx)
)

select * from final
