-- Grain: one row per user and feature the user has (a feature a user lacks is 0 and has no row).
-- Reads: staging.stg_touchpoints, staging.stg_sessions, staging.stg_users.
-- Params: $features (varchar[]): the feature names in matrix column order, from
--             persona_feature_names.sql; a cell whose feature is not in the list has a null
--             feature_index (the caller treats that as an error).
-- Meaning: the behaviour a user is clustered on, as matrix cells: user_index is the user's position
--          (from 0) among stg_users ordered by user_key (persona_users.sql lists them in that
--          order), feature_index the feature's position (from 0) in $features, value the cell.
--          'touchpoint:<name>' and 'stage:<name>' are the shares of the user's journey steps
--          (channel steps included) at that touchpoint or stage (each family sums to 1 per user);
--          n_sessions, n_channels (distinct session channels), converted (1 when the user has a
--          purchase, else 0) and revenue are per user.
--          Integers, not names: at 100M events (6.2M users, 87M cells) the names as strings took
--          gigabytes in Python, and pivoting them there took personas to 13 GiB; as integer cells
--          they are 1.4 GB and numpy places them in the matrix in one step.
with users as (
    select
        user_key,
        cast(row_number() over (order by user_key) - 1 as integer) as user_index,
        n_sessions,
        is_customer,
        revenue
    from staging.stg_users
),

features as (
    select
        unnest($features) as feature,
        cast(generate_subscripts($features, 1) - 1 as integer) as feature_index
),

steps as not materialized (
    select user_key, touchpoint, stage
    from staging.stg_touchpoints
),

step_totals as (
    select s.user_key, u.user_index, s.n_steps
    from (select user_key, count(*) as n_steps from steps group by user_key) as s
    inner join users as u on s.user_key = u.user_key
),

touchpoint_shares as (
    -- counted first, then divided: the totals join the few (user, touchpoint) rows, not every step
    select
        t.user_index,
        'touchpoint:' || c.touchpoint as feature,
        c.n_steps / t.n_steps as value
    from (select user_key, touchpoint, count(*) as n_steps from steps group by user_key, touchpoint) as c
    inner join step_totals as t on c.user_key = t.user_key
),

stage_shares as (
    select
        t.user_index,
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
        u.user_index,
        unnest(['n_sessions', 'n_channels', 'converted', 'revenue']) as feature,
        unnest([
            cast(u.n_sessions as double),
            cast(coalesce(c.n_channels, 0) as double),
            case when u.is_customer then 1.0 else 0.0 end,
            cast(u.revenue as double)
        ]) as value
    from users as u
    left join channels as c on u.user_key = c.user_key
),

cells as (
    select user_index, feature, cast(value as double) as value from touchpoint_shares
    union all
    select user_index, feature, cast(value as double) as value from stage_shares
    union all
    select user_index, feature, value from user_numbers
),

final as (
    select c.user_index, f.feature_index, c.value
    from cells as c
    left join features as f on c.feature = f.feature
)

select * from final
