-- Grain: one row per KPI of one period (the sessions in metric_units).
-- Reads: metric_units (temp table of conversion_units.sql at session level, for one period),
--        staging.stg_events (purchase values).
-- Params: $purchase_event (event name).
-- Meaning: rates as successes over trials (session conversion; cart and checkout abandonment, as
--          in abandonment_rates.sql) and means with their sample standard deviation (average order
--          value: purchase events of the period's sessions with revenue >= 0, a null revenue counts
--          as 0, a negative one is a reversal and no order; revenue per session, sessions without a
--          purchase count as 0).
with units as (
    select * from metric_units
),

orders as (
    select cast(coalesce(e.revenue, 0) as double) as order_value
    from staging.stg_events as e
    inner join units as u on e.session_key = u.unit_id
    where e.event_name = $purchase_event and coalesce(e.revenue, 0) >= 0
),

final as (
    select
        'session_conversion_rate' as metric,
        'rate' as kind,
        count(*) filter (where is_converted) as n_successes,
        count(*) as n,
        cast(null as double) as mean,
        cast(null as double) as sd
    from units
    union all
    select
        'cart_abandonment_rate' as metric,
        'rate' as kind,
        count(*) filter (where not is_cart_completed) as n_successes,
        count(*) as n,
        cast(null as double) as mean,
        cast(null as double) as sd
    from units
    where cart_at is not null
    union all
    select
        'checkout_abandonment_rate' as metric,
        'rate' as kind,
        count(*) filter (where not is_checkout_completed) as n_successes,
        count(*) as n,
        cast(null as double) as mean,
        cast(null as double) as sd
    from units
    where checkout_at is not null
    union all
    select
        'average_order_value' as metric,
        'mean' as kind,
        cast(null as bigint) as n_successes,
        count(*) as n,
        avg(order_value) as mean,
        stddev_samp(order_value) as sd
    from orders
    union all
    select
        'revenue_per_session' as metric,
        'mean' as kind,
        cast(null as bigint) as n_successes,
        count(*) as n,
        avg(cast(revenue as double)) as mean,
        stddev_samp(cast(revenue as double)) as sd
    from units
)

select * from final
