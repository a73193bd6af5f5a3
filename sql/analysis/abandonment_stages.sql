-- Grain: one row per breakdown group ($by) and journey stage reached by at least one unit.
-- Reads: metric_units (temp table of conversion_units.sql), metric_segment_members (temp table),
--        staging.stg_sessions, staging.stg_touchpoints.
-- Params: $level ('session' | 'user'), $start, $end (the window metric_units was built for);
--         $by: as in conversion_rates.sql (time groups at the unit's start).
-- Meaning: the stages a unit reached in the window (any step of the stage, channel steps included;
--          unmapped steps have no stage) and its furthest stage (highest stage_order). A unit is
--          abandoned at stage X when its furthest stage is X and it did not convert: n_abandoned
--          over n_reached is the stage abandonment rate, n_abandoned over n_units the share of all
--          journeys of the group that end there. At session level a post-purchase visit that buys
--          nothing (only a review, say) is abandoned at Loyalty; at user level that user converted.
with units as (
    select * from metric_units
),

sessions as (
    select session_key
    from staging.stg_sessions
    where ($start is null or started_at >= cast($start as timestamp))
        and ($end is null or started_at < cast($end as timestamp))
),

steps as (
    select
        case when $level = 'session' then t.session_key else t.user_key end as unit_id,
        t.stage,
        t.stage_order
    from staging.stg_touchpoints as t
    inner join sessions as s on t.session_key = s.session_key
    where t.stage_order is not null
),

reached as (
    select unit_id, stage, min(stage_order) as stage_order
    from steps
    group by unit_id, stage
),

furthest as (
    select unit_id, max(stage_order) as furthest_stage_order
    from steps
    group by unit_id
),

unit_groups as (
    select
        unit_id,
        coalesce(
            case $by
                when 'all' then 'all'
                when 'channel' then channel
                when 'device' then device
                when 'country' then country
                when 'landing_page' then landing_page
                when 'entry_touchpoint' then entry_touchpoint
                when 'visitor_type' then visitor_type
                when 'day' then strftime(started_at, '%Y-%m-%d')
                when 'week' then strftime(date_trunc('week', started_at), '%Y-%m-%d')
                when 'month' then strftime(started_at, '%Y-%m')
            end,
            'unknown'
        ) as group_value
    from units
    where $by <> 'segment'
    union all
    select
        u.unit_id,
        m.segment as group_value
    from units as u
    inner join metric_segment_members as m on u.user_key = m.user_key
    where $by = 'segment'
),

group_sizes as (
    select group_value, count(*) as n_units
    from unit_groups
    group by group_value
),

stage_counts as (
    select
        g.group_value,
        r.stage,
        r.stage_order,
        count(*) as n_reached,
        count(*) filter (where f.furthest_stage_order = r.stage_order) as n_furthest,
        count(*) filter (where f.furthest_stage_order = r.stage_order and not u.is_converted) as n_abandoned
    from reached as r
    inner join furthest as f on r.unit_id = f.unit_id
    inner join units as u on r.unit_id = u.unit_id
    inner join unit_groups as g on r.unit_id = g.unit_id
    group by g.group_value, r.stage, r.stage_order
),

final as (
    select
        c.group_value,
        c.stage,
        c.stage_order,
        s.n_units,
        c.n_reached,
        c.n_furthest,
        c.n_abandoned
    from stage_counts as c
    inner join group_sizes as s on c.group_value = s.group_value
)

select * from final
