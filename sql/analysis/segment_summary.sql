-- Grain: one row per segment in metric_segment_members.
-- Reads: metric_segment_members (temp table: segment, user_key), staging.stg_users.
-- Params: none.
-- Meaning: each segment's size (n_users and share of all users), customers (users with a
--          purchase), sessions, purchases and revenue. Rates and intervals are added in Python.
with members as (
    select distinct segment, user_key from metric_segment_members
),

users as (
    select * from staging.stg_users
),

totals as (
    select count(*) as n_all_users from users
),

final as (
    select
        m.segment,
        count(*) as n_users,
        count(*) / any_value(t.n_all_users) as share_of_users,
        count(*) filter (where u.is_customer) as n_customers,
        sum(u.n_sessions) as n_sessions,
        sum(u.n_purchases) as n_purchases,
        sum(u.revenue) as revenue
    from members as m
    inner join users as u on m.user_key = u.user_key
    cross join totals as t
    group by m.segment
)

select * from final
