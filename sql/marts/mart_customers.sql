-- Grain: one row per customer: a journey key (user_key) with at least one purchase or refund event.
-- Reads: staging.stg_events, staging.stg_users.
-- Params: none.
-- Meaning: historical customer value with refunds netted.
--   * An order is a `purchase` event with revenue >= 0 (null revenue counts as an order worth 0).
--   * A refund is a `refund` event, worth |revenue| whether the source writes the amount negative or
--     positive, or a `purchase` event with negative revenue (a reversal, not an order). Refunds lower
--     revenue, never the order count.
--   * net_revenue = gross_revenue - refund_amount (the historical CLV); average_order_value =
--     net_revenue / n_orders (null without orders: a refund of an order older than the data).
--   * Purchase days are the distinct UTC dates with an order (two orders on one day are one day).
--   * tenure_days = whole days from the first order's date to the date of the last event in the
--     data (data_end_at, never the wall clock): the customer's age T at the default calibration end.
--   * repeat_frequency_per_month = repeat purchase days (n_purchase_days - 1) per 30 days of tenure,
--     the observed rate BG/NBD models (null when tenure_days = 0).
with events as (
    select user_key, ts, event_name, revenue
    from staging.stg_events
    where event_name in ('purchase', 'refund')
),

data_end as (
    select max(ts) as data_end_at from staging.stg_events
),

users as (
    select user_key, first_seen_at, acquisition_channel, first_device, first_country
    from staging.stg_users
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

per_customer as (
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
),

final as (
    select
        c.user_key,
        u.first_seen_at,
        u.acquisition_channel,
        u.first_device,
        u.first_country,
        c.first_purchase_at,
        c.last_purchase_at,
        c.n_orders,
        c.n_purchase_days,
        c.n_refunds,
        c.gross_revenue,
        c.refund_amount,
        c.gross_revenue - c.refund_amount as net_revenue,
        case
            when c.n_orders > 0 then cast((c.gross_revenue - c.refund_amount) as double) / c.n_orders
        end as average_order_value,
        date_diff('day', cast(c.first_purchase_at as date), cast(d.data_end_at as date)) as tenure_days,
        case
            when date_diff('day', cast(c.first_purchase_at as date), cast(d.data_end_at as date)) > 0
                then 30.0 * (c.n_purchase_days - 1)
                    / date_diff('day', cast(c.first_purchase_at as date), cast(d.data_end_at as date))
        end as repeat_frequency_per_month,
        d.data_end_at
    from per_customer as c
    cross join data_end as d
    left join users as u on c.user_key = u.user_key
)

select * from final
