-- Grain: one row per customer: a journey key (user_key) with at least one purchase or refund event.
-- Reads: staging.stg_events.
-- Params: none.
-- Meaning: a customer's orders and refunds, the per-user facts of the customers mart (which adds
--          the user's attributes and what depends on the end of the data). They depend on the
--          user's own events only, so an incremental build recomputes them for the users that new
--          events touch (pipeline/build.py STAGING_BY_USER) instead of scanning every event.
--   * An order is a `purchase` event with revenue >= 0 (null revenue counts as an order worth 0).
--   * A refund is a `refund` event, worth |revenue| whether the source writes the amount negative or
--     positive, or a `purchase` event with negative revenue (a reversal, not an order). Refunds lower
--     revenue, never the order count.
--   * Purchase days are the distinct UTC dates with an order (two orders on one day are one day).
with events as (
    select user_key, ts, event_name, revenue
    from staging.stg_events
    where event_name in ('purchase', 'refund')
),

classified as (
    select
        user_key,
        ts,
        cast(ts as date) as event_date,
        event_name = 'purchase' and coalesce(revenue, 0) >= 0 as is_order,
        event_name = 'refund' or revenue < 0 as is_refund,
        case
            when event_name = 'purchase' and coalesce(revenue, 0) >= 0 then coalesce(revenue, 0)
            else 0
        end as order_value,
        case
            when event_name = 'refund' or revenue < 0 then abs(coalesce(revenue, 0))
            else 0
        end as refund_value
    from events
),

final as (
    select
        user_key,
        min(ts) filter (where is_order) as first_purchase_at,
        max(ts) filter (where is_order) as last_purchase_at,
        count(*) filter (where is_order) as n_orders,
        count(distinct event_date) filter (where is_order) as n_purchase_days,
        count(*) filter (where is_refund) as n_refunds,
        cast(sum(order_value) as decimal(18, 2)) as gross_revenue,
        cast(sum(refund_value) as decimal(18, 2)) as refund_amount
    from classified
    group by user_key
)

select * from final
