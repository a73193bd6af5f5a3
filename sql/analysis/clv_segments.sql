-- Grain: one row per value of one dimension ($dimension).
-- Reads: marts.mart_user_value, and two temp tables made for one request: clv_predictions
--        (user_key, p_alive, expected_purchases, predicted_clv: the BG/NBD + Gamma-Gamma predictions
--        of the customers in the calibration window) and clv_user_segments (user_key, segment: the
--        analyst's segment mapping, empty when none is given).
-- Params: $dimension: 'furthest_stage' | 'acquisition_channel' | 'entry_touchpoint' |
--         'first_touch_month' | 'device' | 'segment'.
-- Meaning: historical and expected value per group. n_users counts every user of the group,
--   conversion_rate = n_customers / n_users; historical_revenue is net of refunds (mart_customers);
--   predicted_clv is the discounted expected value of future purchases over the horizon, summed over
--   the group's customers (predicted_clv_per_customer divides by n_predicted, the customers that were
--   fitted); total_value_per_customer = historical + predicted per customer. Users without a segment
--   in the mapping are 'unassigned'. sort_order is the stage order for furthest_stage, else null.
with users as (
    select * from marts.mart_user_value
),

predictions as (
    select user_key, p_alive, expected_purchases, predicted_clv from clv_predictions
),

segments as (
    select user_key, any_value(segment) as segment
    from clv_user_segments
    group by user_key
),

labelled as (
    select
        u.*,
        case $dimension
            when 'furthest_stage' then u.furthest_stage
            when 'acquisition_channel' then u.acquisition_channel
            when 'entry_touchpoint' then u.entry_touchpoint
            when 'first_touch_month' then u.first_touch_month
            when 'device' then u.device
            when 'segment' then coalesce(s.segment, 'unassigned')
        end as value,
        case when $dimension = 'furthest_stage' then u.furthest_stage_order end as sort_order,
        p.user_key is not null as is_predicted,
        p.p_alive,
        p.expected_purchases,
        p.predicted_clv
    from users as u
    left join predictions as p on u.user_key = p.user_key
    left join segments as s on u.user_key = s.user_key
),

grouped as (
    select
        coalesce(value, 'unknown') as value,
        min(sort_order) as sort_order,
        count(*) as n_users,
        count(*) filter (where is_customer) as n_customers,
        sum(n_orders) as n_orders,
        cast(sum(net_revenue) as double) as historical_revenue,
        count(*) filter (where is_predicted) as n_predicted,
        avg(p_alive) as mean_p_alive,
        coalesce(sum(expected_purchases), 0) as expected_purchases,
        coalesce(sum(predicted_clv), 0) as predicted_clv
    from labelled
    group by coalesce(value, 'unknown')
),

final as (
    select
        $dimension as dimension,
        value,
        sort_order,
        n_users,
        n_customers,
        n_customers / n_users as conversion_rate,
        n_orders,
        historical_revenue,
        historical_revenue / n_users as historical_revenue_per_user,
        case when n_customers > 0 then historical_revenue / n_customers end as historical_revenue_per_customer,
        case when n_orders > 0 then historical_revenue / n_orders end as average_order_value,
        n_predicted,
        mean_p_alive,
        expected_purchases,
        predicted_clv,
        case when n_predicted > 0 then predicted_clv / n_predicted end as predicted_clv_per_customer,
        case
            when n_customers > 0 and n_predicted > 0
                then historical_revenue / n_customers + predicted_clv / n_predicted
        end as total_value_per_customer
    from grouped
)

select * from final
order by sort_order nulls last, value
