-- Grain: one row per feature (kind, value) seen by at least $min_count units at step $step and
--        missing in at least one.
-- Reads: funnel_units (a temp table pipeline.metrics.funnel makes from sql/analysis/funnel_units.sql),
--        staging.stg_touchpoints, staging.stg_sessions (landing page).
-- Params: $scope ('user' | 'session'), $step (1-based step number, below the last step),
--         $min_count (fewest units with the feature).
-- Meaning: why units dropped at step $step. Population: units that reached step $step; outcome:
--          dropped (did not continue into step $step + 1). Features: the journey's channel, device
--          and country (its first row) and landing page (first page of its first session), and
--          every event name and touchpoint seen before the unit's step-$step row (within the
--          attempt when counting conversions). A feature counts once per unit. n_dropped_with:
--          units with the feature that dropped; n_units / n_dropped: the whole population.
with units as (
    select
        journey_key,
        attempt,
        step_pos[$step] as step_pos,
        not coalesce(continued[$step + 1], false) as is_dropped
    from funnel_units
    where reached[$step]
),

touchpoints as (
    select
        case when $scope = 'session' then session_key else user_key end as journey_key,
        case when $scope = 'session' then session_step_index else user_step_index end as pos,
        is_channel_step,
        event_name,
        touchpoint,
        channel,
        device,
        country
    from staging.stg_touchpoints
),

landing_pages as (
    select
        case when $scope = 'session' then session_key else user_key end as journey_key,
        arg_min(landing_page, session_index) as landing_page
    from staging.stg_sessions
    where landing_page is not null
    group by case when $scope = 'session' then session_key else user_key end
),

journey_attributes as (
    select
        t.journey_key,
        [
            {'kind': 'channel', 'value': t.channel},
            {'kind': 'device', 'value': t.device},
            {'kind': 'country', 'value': t.country},
            {'kind': 'landing_page', 'value': lp.landing_page}
        ] as attributes
    from touchpoints as t
    left join landing_pages as lp on t.journey_key = lp.journey_key
    where t.pos = 1
),

seen_before as (
    select
        u.journey_key,
        u.attempt,
        unnest([
            {'kind': 'event', 'value': t.event_name},
            {'kind': 'touchpoint', 'value': t.touchpoint}
        ]) as feature
    from units as u
    inner join touchpoints as t
        on u.journey_key = t.journey_key
        and t.pos > u.attempt
        and t.pos < u.step_pos
),

attributes as (
    select
        u.journey_key,
        u.attempt,
        unnest(a.attributes) as feature
    from units as u
    inner join journey_attributes as a on u.journey_key = a.journey_key
),

unit_features as (
    select distinct
        journey_key,
        attempt,
        feature.kind as feature_kind,
        feature.value as feature
    from (
        select * from seen_before
        union all
        select * from attributes
    ) as features
    where feature.value is not null
),

totals as (
    select
        count(*) as n_units,
        count(*) filter (where is_dropped) as n_dropped
    from units
),

feature_counts as (
    select
        f.feature_kind,
        f.feature,
        count(*) as n_with,
        count(*) filter (where u.is_dropped) as n_dropped_with
    from unit_features as f
    inner join units as u on f.journey_key = u.journey_key and f.attempt = u.attempt
    group by f.feature_kind, f.feature
),

final as (
    select
        fc.feature_kind,
        fc.feature,
        fc.n_with,
        fc.n_dropped_with,
        t.n_units,
        t.n_dropped
    from feature_counts as fc
    cross join totals as t
    where fc.n_with >= $min_count and fc.n_with < t.n_units
)

select * from final order by feature_kind, feature
