-- Grain: one row per session, carrying its user's attributes (the rows segment filters test).
-- Reads: staging.stg_users, staging.stg_sessions.
-- Params: none.
-- Meaning: the columns are exactly the segment fields of pipeline.config.SEGMENT_FIELDS. User
--          attributes repeat on each of the user's sessions. visitor_type is 'returning' for users
--          with more than one session, else 'new'; value_tier is 'none' for users without a
--          purchase and otherwise 'low' / 'mid' / 'high' by the terciles (quantile_cont at 1/3 and
--          2/3) of buyers' revenue: low <= first tercile < mid <= second tercile < high.
with users as (
    select * from staging.stg_users
),

sessions as (
    select * from staging.stg_sessions
),

terciles as (
    select
        quantile_cont(revenue, 1.0 / 3) as first_tercile,
        quantile_cont(revenue, 2.0 / 3) as second_tercile
    from users
    where is_customer
),

user_attributes as (
    select
        u.user_key,
        u.acquisition_channel,
        u.first_device,
        u.first_country,
        case when u.n_sessions > 1 then 'returning' else 'new' end as visitor_type,
        case
            when not u.is_customer then 'none'
            when u.revenue <= t.first_tercile then 'low'
            when u.revenue <= t.second_tercile then 'mid'
            else 'high'
        end as value_tier,
        cast(u.n_sessions as double) as n_sessions,
        cast(u.n_purchases as double) as n_purchases,
        cast(u.revenue as double) as revenue,
        u.is_customer,
        u.first_seen_at,
        u.last_seen_at
    from users as u
    cross join terciles as t
),

final as (
    select
        s.session_key,
        a.*,
        s.channel,
        s.device,
        s.country,
        s.landing_page,
        s.exit_page,
        s.entry_source,
        s.entry_medium,
        s.entry_campaign,
        s.entry_touchpoint,
        cast(s.session_index as double) as session_index,
        cast(s.duration_seconds as double) as session_duration_seconds,
        cast(s.revenue as double) as session_revenue,
        s.started_at as session_started_at
    from sessions as s
    inner join user_attributes as a on s.user_key = a.user_key
)

select * from final
