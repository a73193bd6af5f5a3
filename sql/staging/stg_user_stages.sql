-- Grain: one row per user and journey stage the user reached (user_key, stage).
-- Reads: staging.stg_touchpoints, staging.stg_events (survey and review properties).
-- Params: none.
-- Meaning: the per-user facts that sql/marts/mart_journey_map.sql adds up (a journey is all
--          sessions of one user, the goal is the purchase event). A stage is reached with any
--          step in it, channel steps included. is_progressed: a step in a later stage at or after the first step in this one;
--          is_abandoned: this is the user's furthest stage and the user never purchased. revenue:
--          the user's purchase revenue. survey_score_sum / n_survey_responses and
--          review_rating_sum / n_reviews: the user's properties 'score' of survey_response and
--          'rating' of review_submitted events. Kept per user so that an incremental build
--          recomputes only the users new events touch; sql/analysis/journey_map_stages.sql is the
--          same arithmetic in one query for any scope and goal (a test keeps the two equal).
with touchpoints as (
    select
        user_key,
        user_step_index,
        event_name,
        stage,
        stage_order,
        revenue,
        coalesce(event_name = 'purchase', false) as is_goal_step
    from staging.stg_touchpoints
),

journeys as (
    select
        user_key,
        max(stage_order) as furthest_stage_order,
        bool_or(is_goal_step) as is_converted,
        coalesce(sum(revenue) filter (where event_name = 'purchase'), 0) as revenue
    from touchpoints
    group by user_key
),

stage_spans as (
    select
        user_key,
        stage,
        min(stage_order) as stage_order,
        min(user_step_index) as first_step_index,
        max(user_step_index) as last_step_index
    from touchpoints
    where stage_order is not null
    group by user_key, stage
),

reached as (
    -- The furthest stage from a stage's first step on: the highest order among the stages with a
    -- step at or after it (a pairing of the few stages of each journey, not a window over every
    -- step; user_step_index follows ts within a user).
    select
        a.user_key,
        a.stage,
        a.stage_order,
        max(b.stage_order) as max_stage_order_after_entry
    from stage_spans as a
    inner join stage_spans as b
        on a.user_key = b.user_key and b.last_step_index >= a.first_step_index
    group by a.user_key, a.stage, a.stage_order
),

responses as (
    select
        user_key,
        sum(survey_score) as survey_score_sum,
        count(survey_score) as n_survey_responses,
        sum(review_rating) as review_rating_sum,
        count(review_rating) as n_reviews
    from (
        select
            user_key,
            case when event_name = 'survey_response' then try_cast(properties ->> 'score' as double) end
                as survey_score,
            case when event_name = 'review_submitted' then try_cast(properties ->> 'rating' as double) end
                as review_rating
        from staging.stg_events
        where event_name in ('survey_response', 'review_submitted')
    )
    group by user_key
),

final as (
    select
        r.user_key,
        r.stage,
        r.stage_order,
        r.max_stage_order_after_entry > r.stage_order as is_progressed,
        j.furthest_stage_order = r.stage_order and not j.is_converted as is_abandoned,
        j.revenue,
        p.survey_score_sum,
        coalesce(p.n_survey_responses, 0) as n_survey_responses,
        p.review_rating_sum,
        coalesce(p.n_reviews, 0) as n_reviews
    from reached as r
    inner join journeys as j on r.user_key = j.user_key
    left join responses as p on r.user_key = p.user_key
)

select * from final
