-- Grain: one row per breakdown group ($by) of the units in metric_units.
-- Reads: metric_units (temp table of conversion_units.sql), metric_segment_members (temp table:
--        segment, user_key; used when $by = 'segment').
-- Params: $by: 'all' | 'channel' | 'device' | 'country' | 'landing_page' | 'entry_touchpoint' |
--         'visitor_type' | 'day' | 'week' | 'month' (of the unit's start; a week starts on Monday) |
--         'segment' (a unit counts in every segment its user belongs to).
-- Meaning: units, converted units, purchases and revenue per group; a missing attribute is
--          'unknown'. The conversion rate and its interval are added in Python.
with units as (
    select * from metric_units
),

grouped as (
    select
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
        ) as group_value,
        is_converted,
        n_purchases,
        revenue
    from units
    where $by <> 'segment'
    union all
    select
        m.segment as group_value,
        u.is_converted,
        u.n_purchases,
        u.revenue
    from units as u
    inner join metric_segment_members as m on u.user_key = m.user_key
    where $by = 'segment'
),

final as (
    select
        group_value,
        count(*) as n_units,
        count(*) filter (where is_converted) as n_converted,
        sum(n_purchases) as n_purchases,
        sum(revenue) as revenue
    from grouped
    group by group_value
)

select * from final
