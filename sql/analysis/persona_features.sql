-- Grain: one row per user and feature (long format; a feature a user lacks is 0 and has no row).
-- Reads: staging.stg_touchpoints, staging.stg_sessions, staging.stg_users.
-- Params: none.
-- Meaning: the behaviour a user is clustered on. 'touchpoint:<name>' and 'stage:<name>' are the
--          shares of the user's journey steps (channel steps included) at that touchpoint or stage
--          (each family sums to 1 per user); n_sessions, n_channels (distinct session channels),
--          converted (1 when the user has a purchase, else 0) and revenue are per user.
with steps as not materialized (
    select user_key, touchpoint, stage
    from staging.stg_touchpoints
),

step_totals as (
    select user_key, count(*) as n_steps
    from steps
    group by user_key
),

touchpoint_shares as (
    -- counted first, then divided: the totals join the few (user, touchpoint) rows, not every step
    select
        c.user_key,
        'touchpoint:' || c.touchpoint as feature,
        c.n_steps / t.n_steps as value
    from (select user_key, touchpoint, count(*) as n_steps from steps group by user_key, touchpoint) as c
    inner join step_totals as t on c.user_key = t.user_key
),

stage_shares as (
    select
        c.user_key,
        'stage:' || c.stage as feature,
        c.n_steps / t.n_steps as value
    from (select user_key, stage, count(*) as n_steps from steps group by user_key, stage) as c
    inner join step_totals as t on c.user_key = t.user_key
),

channels as (
    select user_key, count(distinct channel) as n_channels
    from staging.stg_sessions
    group by user_key
),

user_numbers as (
    select
        u.user_key,
        unnest(['n_sessions', 'n_channels', 'converted', 'revenue']) as feature,
        unnest([
            cast(u.n_sessions as double),
            cast(coalesce(c.n_channels, 0) as double),
            case when u.is_customer then 1.0 else 0.0 end,
            cast(u.revenue as double)
        ]) as value
    from staging.stg_users as u
    left join channels as c on u.user_key = c.user_key
),

final as (
    select user_key, feature, cast(value as double) as value from touchpoint_shares
    union all
    select user_key, feature, cast(value as double) as value from stage_shares
    union all
    select user_key, feature, value from user_numbers
)

select * from final
