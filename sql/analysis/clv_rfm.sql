-- Grain: one row per customer (user_key) whose first order is on or before the calibration end.
-- Reads: staging.stg_events.
-- Params: $calibration_end (date): last day of the calibration window (orders on it count);
--         $unit_days (1 = day, 7 = week): length of the model's time unit in days.
-- Meaning: the RFM summary BG/NBD and Gamma-Gamma are fitted on, as in the literature (Fader, Hardie &
--   Lee 2005; lifetimes' summary_data_from_transaction_data): a purchase occasion is a distinct UTC
--   date with at least one order (an order is a `purchase` event with revenue >= 0, as in
--   marts.mart_customers), so two orders on one day count once and their values add up.
--   * frequency = repeat purchase days in the calibration window (occasions after the first);
--   * recency = last - first purchase day, age = calibration end - first purchase day (T in the
--     literature), both in model time units (days / $unit_days);
--   * monetary_value = mean value of the repeat purchase days (0 when frequency = 0); the first day's
--     value is first_purchase_value. Refunds are not netted here (Gamma-Gamma needs positive spend;
--     mart_customers nets them for the historical value);
--   * holdout_frequency / holdout_value: purchase days and their value after the calibration end.
with orders as (
    select user_key, cast(ts as date) as purchase_date, coalesce(revenue, 0) as revenue
    from staging.stg_events
    where event_name = 'purchase' and coalesce(revenue, 0) >= 0
),

purchase_days as (
    select user_key, purchase_date, sum(revenue) as day_value
    from orders
    group by user_key, purchase_date
),

numbered as (
    select
        *,
        min(purchase_date) over (partition by user_key) as first_purchase_date,
        purchase_date <= cast($calibration_end as date) as is_calibration
    from purchase_days
),

final as (
    select
        user_key,
        first_purchase_date,
        max(purchase_date) filter (where is_calibration) as last_purchase_date,
        count(*) filter (where is_calibration and purchase_date > first_purchase_date) as frequency,
        date_diff('day', first_purchase_date, max(purchase_date) filter (where is_calibration))
            / cast($unit_days as double) as recency,
        date_diff('day', first_purchase_date, cast($calibration_end as date)) / cast($unit_days as double) as age,
        coalesce(
            avg(day_value) filter (where is_calibration and purchase_date > first_purchase_date), 0
        ) as monetary_value,
        sum(day_value) filter (where purchase_date = first_purchase_date) as first_purchase_value,
        count(*) filter (where not is_calibration) as holdout_frequency,
        coalesce(sum(day_value) filter (where not is_calibration), 0) as holdout_value
    from numbered
    group by user_key, first_purchase_date
    having first_purchase_date <= cast($calibration_end as date)
)

select * from final
order by user_key
