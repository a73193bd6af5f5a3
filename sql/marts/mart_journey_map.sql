-- Grain: one row per journey stage (stage_order ascending) reached by at least one user.
-- Reads: staging.stg_user_stages (per user and stage), staging.stg_stage_visits (per visit),
--        staging.stg_touchpoints (touchpoint counts), staging.stg_users (the number of journeys).
-- Params: none (the defaults of pipeline.metrics.journey_map.journey_map: a journey is all sessions of
--         one user, the goal is the purchase event, top 3 touchpoints); sql/analysis/
--         journey_map_stages.sql computes the same numbers in one query with those as parameters,
--         and a test keeps the two equal.
-- Meaning: n_reached: users with a step in the stage (channel steps included: they are the Awareness
--          touchpoints); n_progressed: of those, users with a step in a later stage at or after their
--          first step in this stage (conversion to the next stage); n_abandoned: users whose furthest
--          stage is this one and who never purchased. progression_rate = n_progressed / n_reached,
--          abandonment_rate = n_abandoned / n_reached. median_seconds_in_stage: median over visits
--          (runs of one stage, channel steps left out, as in stage_moves.sql) of the time from entering
--          the stage to entering the next one. top_touchpoints: the 3 touchpoints with most steps in the
--          stage, as 'name (steps)'. revenue: purchase revenue of the users who reached the stage.
--          mean_survey_score / mean_review_rating: mean of the properties keys 'score' of
--          survey_response and 'rating' of review_submitted events of the users who reached the stage
--          (null where there are none).
--          The per-user facts live in the two staging tables, so an incremental build recomputes
--          them only for the users that new events touch and this mart only adds them up.
with user_stages as (
    select * from staging.stg_user_stages
),

time_in_stage as (
    select stage, median(seconds_in_stage) as median_seconds_in_stage
    from staging.stg_stage_visits
    group by stage
),

touchpoint_uses as (
    select
        stage,
        touchpoint,
        count(*) as n_steps,
        row_number() over (partition by stage order by count(*) desc, touchpoint) as touchpoint_rank
    from staging.stg_touchpoints
    where stage_order is not null
    group by stage, touchpoint
),

top_touchpoints as (
    select
        stage,
        concat_ws(
            ', ',
            max(case when touchpoint_rank = 1 then label end),
            max(case when touchpoint_rank = 2 then label end),
            max(case when touchpoint_rank = 3 then label end)
        ) as top_touchpoints
    from (
        select stage, touchpoint_rank, touchpoint || ' (' || cast(n_steps as varchar) || ')' as label
        from touchpoint_uses
    )
    group by stage
),

stage_counts as (
    select
        stage,
        min(stage_order) as stage_order,
        count(*) as n_reached,
        count(*) filter (where is_progressed) as n_progressed,
        count(*) filter (where is_abandoned) as n_abandoned,
        sum(revenue) as revenue,
        sum(survey_score_sum) as survey_score_sum,
        sum(n_survey_responses) as n_survey_responses,
        sum(review_rating_sum) as review_rating_sum,
        sum(n_reviews) as n_reviews
    from user_stages
    group by stage
),

final as (
    select
        c.stage,
        c.stage_order,
        c.n_reached,
        c.n_reached / (select count(*) from staging.stg_users) as reach_rate,
        c.n_progressed,
        c.n_progressed / c.n_reached as progression_rate,
        c.n_abandoned,
        c.n_abandoned / c.n_reached as abandonment_rate,
        t.median_seconds_in_stage,
        tt.top_touchpoints,
        c.revenue,
        case when c.n_survey_responses > 0 then c.survey_score_sum / c.n_survey_responses end
            as mean_survey_score,
        c.n_survey_responses,
        case when c.n_reviews > 0 then c.review_rating_sum / c.n_reviews end as mean_review_rating,
        c.n_reviews
    from stage_counts as c
    left join time_in_stage as t on c.stage = t.stage
    left join top_touchpoints as tt on c.stage = tt.stage
)

select * from final
order by stage_order, stage
