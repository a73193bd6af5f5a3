-- Grain: one row per journey stage (stage_order ascending) reached by at least one journey.
-- Reads: staging.stg_touchpoints, staging.stg_events (survey and review properties).
-- Params: $scope ('user' | 'session'): a journey is all sessions of one user, or one session;
--         $goal, $goal_kind ('event' | 'touchpoint'): the conversion;
--         $top_n (integer): how many touchpoints to list per stage.
-- Meaning: n_reached: journeys with a step in the stage (channel steps included: they are the
--          Awareness touchpoints); n_progressed: of those, journeys with a step in a later stage at or
--          after their first step in this stage (conversion to the next stage); n_abandoned: journeys
--          whose furthest stage is this one and that did not convert. median_seconds_in_stage: median
--          over visits (runs of one stage, channel steps left out, as in stage_moves.sql) of the time
--          from entering the stage to entering the next one. top_touchpoints: the $top_n touchpoints
--          with most steps in the stage, as 'name (steps)'. revenue: purchase revenue of the journeys
--          that reached the stage. mean_survey_score / mean_review_rating: mean of the properties keys
--          'score' of survey_response and 'rating' of review_submitted events in the journeys that
--          reached the stage (null where there are none).
with touchpoints as (
    select
        case when $scope = 'user' then user_key else session_key end as journey_id,
        user_step_index,
        ts,
        is_channel_step,
        event_name,
        touchpoint,
        stage,
        stage_order,
        revenue,
        coalesce(case when $goal_kind = 'event' then event_name = $goal else touchpoint = $goal end, false)
            as is_goal_step
    from staging.stg_touchpoints
),

journeys as (
    select
        journey_id,
        max(stage_order) as furthest_stage_order,
        bool_or(is_goal_step) as is_converted,
        coalesce(sum(revenue) filter (where event_name = 'purchase'), 0) as revenue
    from touchpoints
    group by journey_id
),

staged as (
    select *
    from touchpoints
    where stage_order is not null
),

stage_spans as (
    select
        journey_id,
        stage,
        min(stage_order) as stage_order,
        min(user_step_index) as first_step_index,
        max(user_step_index) as last_step_index
    from staged
    group by journey_id, stage
),

reached as (
    -- The furthest stage from a stage's first step on: the highest order among the stages with a
    -- step at or after it (a pairing of the few stages of each journey, not a window over every
    -- step; user_step_index follows ts within a user).
    select
        a.journey_id,
        a.stage,
        a.stage_order,
        max(b.stage_order) as max_stage_order_after_entry
    from stage_spans as a
    inner join stage_spans as b
        on a.journey_id = b.journey_id and b.last_step_index >= a.first_step_index
    group by a.journey_id, a.stage, a.stage_order
),

runs as (
    select *
    from (
        select
            journey_id,
            user_step_index,
            ts,
            stage,
            lag(stage) over (partition by journey_id order by ts, user_step_index) as previous_stage
        from staged
        where not is_channel_step
    )
    where previous_stage is null or stage <> previous_stage
),

visits as (
    select
        stage,
        epoch(lead(ts) over (partition by journey_id order by ts, user_step_index)) - epoch(ts) as seconds_in_stage
    from runs
),

time_in_stage as (
    select stage, median(seconds_in_stage) as median_seconds_in_stage
    from visits
    group by stage
),

touchpoint_uses as (
    select
        stage,
        touchpoint,
        count(*) as n_steps,
        row_number() over (partition by stage order by count(*) desc, touchpoint) as touchpoint_rank
    from staged
    group by stage, touchpoint
),

top_touchpoints as (
    select
        stage,
        string_agg(touchpoint || ' (' || cast(n_steps as varchar) || ')', ', ' order by touchpoint_rank)
            as top_touchpoints
    from touchpoint_uses
    where touchpoint_rank <= $top_n
    group by stage
),

responses as (
    select
        case when $scope = 'user' then user_key else session_key end as journey_id,
        case when event_name = 'survey_response' then try_cast(properties ->> 'score' as double) end as survey_score,
        case when event_name = 'review_submitted' then try_cast(properties ->> 'rating' as double) end as review_rating
    from staging.stg_events
    where event_name in ('survey_response', 'review_submitted')
),

satisfaction as (
    select
        r.stage,
        avg(p.survey_score) as mean_survey_score,
        count(p.survey_score) as n_survey_responses,
        avg(p.review_rating) as mean_review_rating,
        count(p.review_rating) as n_reviews
    from reached as r
    inner join responses as p on r.journey_id = p.journey_id
    group by r.stage
),

stage_counts as (
    select
        r.stage,
        min(r.stage_order) as stage_order,
        count(*) as n_reached,
        count(*) filter (where r.max_stage_order_after_entry > r.stage_order) as n_progressed,
        count(*) filter (where j.furthest_stage_order = r.stage_order and not j.is_converted) as n_abandoned,
        sum(j.revenue) as revenue
    from reached as r
    inner join journeys as j on r.journey_id = j.journey_id
    group by r.stage
),

final as (
    select
        c.stage,
        c.stage_order,
        c.n_reached,
        c.n_reached / (select count(*) from journeys) as reach_rate,
        c.n_progressed,
        c.n_abandoned,
        t.median_seconds_in_stage,
        tt.top_touchpoints,
        c.revenue,
        s.mean_survey_score,
        coalesce(s.n_survey_responses, 0) as n_survey_responses,
        s.mean_review_rating,
        coalesce(s.n_reviews, 0) as n_reviews
    from stage_counts as c
    left join time_in_stage as t on c.stage = t.stage
    left join top_touchpoints as tt on c.stage = tt.stage
    left join satisfaction as s on c.stage = s.stage
)

select * from final
order by stage_order, stage
