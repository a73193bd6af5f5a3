-- Grain: one row per journey key (user_key), customers and non-customers alike.
-- Reads: staging.stg_users, staging.stg_user_stages, staging.stg_customers.
-- Params: none.
-- Meaning: the dimensions value is broken down by, next to the user's historical value:
--   * furthest_stage: the mapped stage with the highest stage_order the user ever reached (any step,
--     channel steps included; 'unmapped' when no step maps to a stage);
--   * entry_touchpoint: the touchpoint of the user's first event step (the first thing they did; the
--     channel they came from is acquisition_channel);
--   * first_touch_month: the month (UTC) of the first event, as 'YYYY-MM' (the first-touch cohort);
--   * device: the device of the first session.
--   is_customer means at least one order; net_revenue is 0 for users without orders or refunds.
--   Every column depends on the user's own staging rows only (net_revenue as in mart_customers,
--   from stg_customers), so an incremental build recomputes the rows of the users that new events
--   touch (pipeline/build.py MARTS_BY_USER) instead of every user.
with users as (
    select user_key, first_seen_at, acquisition_channel, first_device, first_country, entry_touchpoint
    from staging.stg_users
),

furthest as (
    -- the user's (user, stage) pairs are stored: the ranking sorts a few rows per user
    select user_key, stage as furthest_stage, stage_order as furthest_stage_order
    from staging.stg_user_stages
    qualify row_number() over (partition by user_key order by stage_order desc, stage) = 1
),

customers as (
    select user_key, n_orders, gross_revenue - refund_amount as net_revenue
    from staging.stg_customers
),

final as (
    select
        u.user_key,
        u.first_seen_at,
        strftime(u.first_seen_at, '%Y-%m') as first_touch_month,
        u.acquisition_channel,
        u.first_device as device,
        u.first_country as country,
        coalesce(u.entry_touchpoint, 'none') as entry_touchpoint,
        coalesce(f.furthest_stage, 'unmapped') as furthest_stage,
        f.furthest_stage_order,
        coalesce(c.n_orders, 0) > 0 as is_customer,
        coalesce(c.n_orders, 0) as n_orders,
        coalesce(c.net_revenue, 0) as net_revenue
    from users as u
    left join furthest as f on u.user_key = f.user_key
    left join customers as c on u.user_key = c.user_key
)

select * from final
