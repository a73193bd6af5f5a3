-- Grain: one row per journey = one per user (journey_id = user_key).
-- Reads: staging.stg_users, staging.stg_touchpoints.
-- Params: $goal (varchar): the touchpoint that is the conversion ('purchase': the first order).
-- Meaning: converted = the user has a goal step; conversion_ts is the first goal step's time and
--   revenue its revenue (the first order's value; 0 when missing or not converted), so attributed
--   revenue is first-order revenue.
with users as (
    select user_key from staging.stg_users
),

conversions as (
    select user_key, ts as conversion_ts, coalesce(revenue, 0) as revenue
    from staging.stg_touchpoints
    where touchpoint = $goal
    qualify row_number() over (partition by user_key order by user_step_index) = 1
),

final as (
    select
        u.user_key as journey_id,
        c.user_key is not null as converted,
        cast(coalesce(c.revenue, 0) as double) as revenue,
        c.conversion_ts
    from users as u
    left join conversions as c on u.user_key = c.user_key
)

select * from final
order by journey_id
