-- Grain: one row per touch (a journey step credited by attribution), ordered by journey and time.
-- Reads: staging.stg_touchpoints.
-- Params: $level ('channel' | 'touchpoint'): channel = the channel steps (the channel that opened each
--             session), labelled by channel; touchpoint = every step (channel steps and event
--             touchpoints) except the goal itself, labelled by touchpoint;
--         $goal (varchar): the touchpoint that is the conversion ('purchase': the first order);
--         $lookback_seconds (double): a converter's touches count only within this time before the
--             conversion.
-- Meaning: one journey per user (journey_id = user_key). A converter's journey is the steps before
--   its first goal step (in step order) within the lookback; a non-converter's journey is all of its
--   steps (no lookback: there is no conversion to look back from). step_index keeps the step order
--   for touches with equal timestamps.
with steps as (
    select user_key, user_step_index, ts, is_channel_step, channel, touchpoint
    from staging.stg_touchpoints
),

conversions as (
    select user_key, ts as conversion_ts, user_step_index as conversion_step_index
    from steps
    where touchpoint = $goal
    qualify row_number() over (partition by user_key order by user_step_index) = 1
),

candidates as (
    select
        s.user_key,
        s.user_step_index,
        s.ts,
        case when $level = 'channel' then s.channel else s.touchpoint end as label,
        c.conversion_ts,
        c.conversion_step_index
    from steps as s
    left join conversions as c on s.user_key = c.user_key
    where case when $level = 'channel' then s.is_channel_step else s.touchpoint <> $goal end
),

final as (
    select
        user_key as journey_id,
        ts,
        coalesce(label, 'unknown') as channel,
        user_step_index as step_index
    from candidates
    where conversion_step_index is null
        or (
            user_step_index < conversion_step_index
            and epoch(conversion_ts) - epoch(ts) <= $lookback_seconds
        )
)

select * from final
order by journey_id, ts, step_index
