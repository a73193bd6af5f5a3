-- Grain: one row per distinct path (sequence of nodes) among the selected journeys.
-- Reads: journey_steps (temp table for one request).
-- Params: $starting_at (varchar or null): keep each journey from its first step at this node;
--         $ending_at (varchar or null): keep each journey up to its first step at this node;
--         $max_steps (integer, 0 = all): cut paths after this many steps;
--         $outcome ('all' | 'converted' | 'abandoned'): which journeys;
--         $top (integer): how many paths, most frequent first.
-- Meaning: the path variants with their count, share of the selected journeys, conversion rate and
--          median duration (seconds from first to last step of the kept path).
with steps as (
    select * from journey_steps
    where $outcome = 'all'
        or ($outcome = 'converted' and is_converted)
        or ($outcome = 'abandoned' and not is_converted)
),

anchors as (
    select
        *,
        min(idx) filter (where node = $starting_at) over (partition by journey_id) as start_idx,
        min(idx) filter (where node = $ending_at) over (partition by journey_id) as end_idx
    from steps
),

windowed as (
    select *
    from anchors
    where ($starting_at is null or (start_idx is not null and idx >= start_idx))
        and ($ending_at is null or (end_idx is not null and idx <= end_idx))
),

cut as (
    select *
    from windowed
    where $max_steps = 0 or idx - coalesce(start_idx, 1) < $max_steps
),

journeys as (
    select
        journey_id,
        any_value(is_converted) as is_converted,
        epoch(max(ts)) - epoch(min(ts)) as duration_seconds,
        count(*) as n_steps,
        array_to_string(list_transform(list_sort(list({'i': idx, 'n': node})), lambda x: x.n), ' > ') as path
    from cut
    group by journey_id
),

final as (
    select
        path,
        any_value(n_steps) as n_steps,
        count(*) as n_journeys,
        count(*) / sum(count(*)) over () as share,
        avg(cast(is_converted as double)) as conversion_rate,
        median(duration_seconds) as median_duration_seconds
    from journeys
    group by path
)

select * from final
order by n_journeys desc, path
limit $top
