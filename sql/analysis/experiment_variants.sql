-- Grain: one row per variant of an experiment.
-- Reads: staging.stg_events, staging.stg_touchpoints.
-- Params: $variant_key (varchar): the properties key that carries the variant (a key starting
--             with '$' is read as a JSONPath);
--         $assignment_event (varchar or null): only events of this name assign (null: any event);
--         $goal, $goal_kind ('event' | 'touchpoint'): the conversion.
-- Meaning: a user's variant is the one on their first assigning event (by ts, then event_id);
--          n_switched counts the users of the variant who later carry another one (kept in their
--          first variant). A user converts when a goal step comes at or after the assignment;
--          revenue is their purchase revenue from the assignment on.
with assigning as (
    select
        user_key,
        event_id,
        ts,
        properties ->> $variant_key as variant
    from staging.stg_events
    where properties is not null
        and ($assignment_event is null or event_name = $assignment_event)
        and properties ->> $variant_key is not null
),

assignments as (
    select
        user_key,
        variant,
        ts as assigned_at
    from assigning
    qualify row_number() over (partition by user_key order by ts, event_id) = 1
),

switched as (
    select user_key, count(distinct variant) > 1 as has_switched
    from assigning
    group by user_key
),

goal_steps as (
    select user_key, ts
    from staging.stg_touchpoints
    where coalesce(case when $goal_kind = 'event' then event_name = $goal else touchpoint = $goal end, false)
),

purchases as (
    select user_key, ts, revenue
    from staging.stg_events
    where event_name = 'purchase'
),

goals_after as (
    select
        a.user_key,
        count(g.ts) > 0 as is_converted
    from assignments as a
    left join goal_steps as g on a.user_key = g.user_key and g.ts >= a.assigned_at
    group by a.user_key
),

revenue_after as (
    select
        a.user_key,
        coalesce(sum(p.revenue), 0) as revenue
    from assignments as a
    left join purchases as p on a.user_key = p.user_key and p.ts >= a.assigned_at
    group by a.user_key
),

user_outcomes as (
    select
        a.user_key,
        a.variant,
        g.is_converted,
        r.revenue,
        s.has_switched
    from assignments as a
    inner join goals_after as g on a.user_key = g.user_key
    inner join revenue_after as r on a.user_key = r.user_key
    inner join switched as s on a.user_key = s.user_key
),

final as (
    select
        variant,
        count(*) as n_users,
        count(*) filter (where is_converted) as n_converted,
        count(*) filter (where has_switched) as n_switched,
        sum(revenue) as revenue,
        avg(cast(revenue as double)) as revenue_per_user,
        coalesce(stddev_samp(cast(revenue as double)), 0) as revenue_per_user_sd
    from user_outcomes
    group by variant
)

select * from final
order by variant
