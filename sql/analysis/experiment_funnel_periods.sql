-- Grain: one row per period ('before', 'after') and funnel step.
-- Reads: metric_funnel_units (a frame registered by pipeline.metrics.experiments: the units of
--        sql/analysis/funnel_units.sql at session scope, with per-step lists reached and from_first),
--        staging.stg_sessions (sessions per period).
-- Params: $before_start, $before_end, $after_start, $after_end (timestamps; [start, end)),
--         $n_steps (number of funnel steps).
-- Meaning: a funnel unit belongs to the period its first step (started_us) falls in. Step 1:
--          n_successes = units at step 1, n = sessions starting in the period (the share of sessions
--          that enter the funnel). Step k > 1: n = units at step 1, n_successes = those of them that
--          reached step k from it (conversion from the first step, as funnel_steps.sql).
with units as (
    select
        case
            when make_timestamp(started_us) >= cast($before_start as timestamp)
                and make_timestamp(started_us) < cast($before_end as timestamp) then 'before'
            when make_timestamp(started_us) >= cast($after_start as timestamp)
                and make_timestamp(started_us) < cast($after_end as timestamp) then 'after'
        end as period,
        reached,
        from_first
    from metric_funnel_units
),

sessions as (
    select
        case
            when started_at >= cast($before_start as timestamp) and started_at < cast($before_end as timestamp)
                then 'before'
            when started_at >= cast($after_start as timestamp) and started_at < cast($after_end as timestamp)
                then 'after'
        end as period,
        count(*) as n_sessions
    from staging.stg_sessions
    group by period
),

periods as (
    select unnest(['before', 'after']) as period
),

step_numbers as (
    select unnest(range(1, $n_steps + 1)) as step_index
),

unit_steps as (
    select
        u.period,
        s.step_index,
        coalesce(u.reached[1], false) as is_at_first,
        coalesce(u.reached[1] and u.from_first[s.step_index], false) as is_from_first
    from units as u
    cross join step_numbers as s
    where u.period is not null
),

step_counts as (
    select
        p.period,
        s.step_index,
        count(u.period) filter (where u.is_at_first) as n_first,
        count(u.period) filter (where u.is_from_first) as n_from_first
    from periods as p
    cross join step_numbers as s
    left join unit_steps as u on p.period = u.period and s.step_index = u.step_index
    group by p.period, s.step_index
),

final as (
    select
        c.period,
        c.step_index,
        case when c.step_index = 1 then c.n_first else c.n_from_first end as n_successes,
        case when c.step_index = 1 then coalesce(se.n_sessions, 0) else c.n_first end as n
    from step_counts as c
    left join sessions as se on c.period = se.period
)

select * from final
order by period, step_index
