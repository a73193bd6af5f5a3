-- Grain: one row per journey kind: single-channel or cross-channel.
-- Reads: journey_steps (temp table for one request).
-- Params: none.
-- Meaning: a journey is cross-channel when its steps carry more than one channel; n_converted and
--          conversion_rate say how each kind converts.
with journeys as (
    select
        journey_id,
        count(distinct channel) as n_channels,
        bool_or(is_converted) as is_converted
    from journey_steps
    group by journey_id
),

final as (
    select
        case when n_channels > 1 then 'cross_channel' else 'single_channel' end as journey_kind,
        count(*) as n_journeys,
        count(*) filter (where is_converted) as n_converted,
        avg(cast(is_converted as double)) as conversion_rate,
        avg(n_channels) as mean_channels
    from journeys
    group by journey_kind
)

select * from final
order by journey_kind
