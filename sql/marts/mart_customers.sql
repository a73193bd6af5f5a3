-- Grain: one row per customer: a journey key (user_key) with at least one purchase or refund event.
-- Reads: staging.stg_customers, staging.stg_events (the end of the data), staging.stg_users.
-- Params: none.
-- Meaning: historical customer value with refunds netted, from the customer's orders and refunds
--   (staging.stg_customers: what an order and a refund are).
--   * net_revenue = gross_revenue - refund_amount (the historical CLV); average_order_value =
--     net_revenue / n_orders (null without orders: a refund of an order older than the data).
--   * tenure_days = whole days from the first order's date to the date of the last event in the
--     data (data_end_at, never the wall clock): the customer's age T at the default calibration end.
--   * repeat_frequency_per_month = repeat purchase days (n_purchase_days - 1) per 30 days of tenure,
--     the observed rate BG/NBD models (null when tenure_days = 0).
with per_customer as (
    select * from staging.stg_customers
),

data_end as (
    select max(ts) as data_end_at from staging.stg_events
),

users as (
    select user_key, first_seen_at, acquisition_channel, first_device, first_country
    from staging.stg_users
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
