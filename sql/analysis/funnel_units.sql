-- Grain: one row per funnel unit: a journey at the chosen scope (user_key or session_key) that did
--        at least one funnel step; when counting conversions, one row per attempt of a journey
--        (the journey is cut after every row that completes the funnel, see below).
-- Reads: staging.stg_touchpoints, staging.stg_users (cohort), staging.stg_events (variant
--        property), funnel_segments (a view the caller registers: user_key, segment).
-- Params: $scope ('user' | 'session'), $mode ('ordered' | 'strict' | 'unordered' | 'open' | 'reach'),
--         $count ('users' | 'sessions' | 'conversions'), $n_steps (number of steps, 2..30),
--         $step_index, $step_kind, $step_value: one entry per alternative of every step (1-based
--           step number, 'event' | 'touchpoint' | 'stage', the value matched),
--         $excl_index, $excl_kind, $excl_value: the same for the exclusion steps (numbered 1..E),
--         $excl_active: n_steps bitmasks; bit e-1 of entry j is set when exclusion e forbids its
--           event between step j-1 and step j (its range covers j),
--         $window_us: the whole-funnel conversion window in microseconds from step 1 (null: none),
--         $step_window_us: n_steps entries, entry j the most microseconds from step j-1 to step j
--           (null: none; entry 1 unused),
--         $by ('none' | 'channel' | 'device' | 'country' | 'cohort' | 'variant' | 'segment'),
--         $variant_key (the stg_events.properties key read when $by = 'variant').
--         $simple_ordered (boolean): the request is ordered with no window, step window or
--           exclusion and does not count conversions (the caller decides; see simple_journeys).
-- Meaning: how far each unit went. Journey rows are ordered by ts, then channel step before event,
--          then event_id (the staging step index), so ties are deterministic. A row matches a step
--          by event name, touchpoint or stage (synthetic channel steps have touchpoints and stages
--          too); a row may match several steps but plays one step in a path.
--          ordered/strict (and "from first" in open): a path is rows p1 < ... < pk matching steps
--          1..k with ts(pk) - ts(p1) <= window, ts(pj) - ts(pj-1) <= step window j, no row of an
--          exclusion active at j strictly between pj-1 and pj, and (strict) no event strictly
--          between pj-1 and pj (channel steps neither count nor break adjacency). The unit reached
--          step k when some row ends a valid k-path (any attempt: a clean later attempt counts).
--          How: level by level (a recursive CTE; one window pass per step over the rows that
--          match a step or an exclusion, no self-join) each row keeps the latest path that ends on
--          it. Valid paths ending on a row are closed under element-wise max, and the latest paths
--          of successive valid rows only grow, so the last valid step-(j-1) row before a step-j row
--          is the best predecessor and every field of its path is a running max. Rows store a
--          pointer to their predecessor; the reported path is rebuilt from it at the end.
--          Reported path (times): the latest path of the first row that reached the unit's
--          furthest step. step_pos k: the first row that reached step k (why-dropped looks before).
--          conversions: every row that ends a valid n_steps-path cuts the journey after it; each
--          piece is an attempt (attempt = the cut it follows, 0 first) with the paths inside it.
--          open: step k counts journeys that did step k; continued into k: the last step-(k-1) row
--          before some step-k row is within the windows of it with no active exclusion between.
--          unordered: step k counts journeys that did k distinct steps, in any order, within the
--          window after the first of them; an exclusion row ends the attempt.
--          reach: step k counts journeys that did step k at all; continued into k: did k-1 and k.
with recursive touchpoints as not materialized (
    select
        case when $scope = 'session' then session_key else user_key end as journey_key,
        user_key,
        case when $scope = 'session' then session_step_index else user_step_index end as pos,
        epoch_us(ts) as ts_us,
        is_channel_step,
        session_key,
        session_step_index,
        event_name,
        touchpoint,
        stage,
        channel,
        device,
        country
    from staging.stg_touchpoints
),

definitions as (
    select
        unnest(cast($step_index as integer[])) as item_index,
        unnest(cast($step_kind as varchar[])) as kind,
        unnest(cast($step_value as varchar[])) as value,
        'step' as role
    union all
    select
        unnest(cast($excl_index as integer[])) as item_index,
        unnest(cast($excl_kind as varchar[])) as kind,
        unnest(cast($excl_value as varchar[])) as value,
        'exclusion' as role
),

masks as (
    select
        kind,
        value,
        bit_or(case when role = 'step' then cast(1 as bigint) << (item_index - 1) else 0 end) as step_mask,
        bit_or(case when role = 'exclusion' then cast(1 as bigint) << (item_index - 1) else 0 end) as excl_mask
    from definitions
    group by kind, value
),

matched as (
    select
        t.journey_key,
        t.pos,
        t.ts_us,
        t.is_channel_step,
        coalesce(me.step_mask, 0) | coalesce(mt.step_mask, 0) | coalesce(ms.step_mask, 0) as mask,
        coalesce(me.excl_mask, 0) | coalesce(mt.excl_mask, 0) | coalesce(ms.excl_mask, 0) as xmask
    from touchpoints as t
    left join masks as me on me.kind = 'event' and t.event_name = me.value
    left join masks as mt on mt.kind = 'touchpoint' and t.touchpoint = mt.value
    left join masks as ms on ms.kind = 'stage' and t.stage = ms.value
),

relevant as (
    select
        journey_key,
        pos,
        ts_us,
        is_channel_step,
        mask,
        xmask,
        -- channel steps up to this row (strict mode counts events between two rows from it)
        count(*) filter (where is_channel_step) over by_position as channel_ord,
        -- exclusion rows up to this row (an exclusion ends an unordered attempt)
        count(*) filter (where xmask <> 0) over by_position as x_segment
    from matched
    where not $simple_ordered and (mask <> 0 or xmask <> 0 or ($mode = 'strict' and is_channel_step))
    window by_position as (partition by journey_key order by pos rows between unbounded preceding and current row)
),

step_rows as (
    select * from relevant where mask <> 0 or xmask <> 0
),

step_numbers as (
    select unnest(range(1, $n_steps + 1)) as step_number
),

-- $simple_ordered (ordered mode with no window, step window or exclusion, not counting
-- conversions): every step-j row after the first step-(j-1) row ends a valid path, so the first
-- row to reach step j is the first step-j row after the first row to reach step j-1 (a greedy
-- walk forward), and the latest path of that row is the last step-(j-1) row before it, the last
-- step-(j-2) row before that, and so on (a greedy walk back). Both walks run over one list per
-- journey of its matching rows in order: one aggregate, no join, no recursion; the windows over
-- every matched row that the general levels need are skipped (the planner drops the general
-- branches). The walks joined the rows once per step before: at 100M events that held more than
-- DuckDB's memory. Same units as the general path (tests/metrics/test_funnel_properties.py).
simple_journeys as (
    select
        journey_key,
        -- pos is unique in a journey, so sorting the structs orders the rows by pos
        list_sort(list({'pos': pos, 'ts_us': ts_us, 'mask': mask})) as steps
    from matched
    where $simple_ordered and mask <> 0
    group by journey_key
    -- units are the journeys that did step 1 (as in the general path)
    having bool_or(mask & 1 = 1)
),

simple_firsts as (
    select
        journey_key,
        steps,
        -- forward: element k is the index in steps of the first row that reached step k
        list_reduce(
            steps,
            lambda acc, x, i: case
                when len(acc) < $n_steps and (x.mask >> len(acc)) & 1 = 1 then list_append(acc, i) else acc
            end,
            cast([] as bigint[])
        ) as firsts
    from simple_journeys
),

simple_ends as (
    select
        journey_key,
        len(firsts) as n_reached,
        list_transform(firsts, lambda f, k: {'step_number': k, 'pos': steps[f].pos}) as first_reached,
        -- back from the first row at the furthest step: element k is the time of the path's row
        -- of step n_reached - k + 1. The walk never goes before the first row to reach step 1
        -- (every path row of step k is at or after the first row to reach k), so it starts there;
        -- a journey that reached step 1 only has nothing to walk; and it carries times only, the
        -- one field the path reports (a list of rows was copied at every step of the walk).
        -- 10M events, the report's two funnels (checkout by device; stages), three runs each:
        -- 4.16-4.39 and 3.59-3.66 s before, 3.70-3.79 and 3.53-3.67 s with the first two, 3.15-3.23
        -- and 2.93-3.04 s with all three; the same units.
        case
            when len(firsts) = 1 then [steps[firsts[1]].ts_us]
            else list_reduce(
                list_reverse(steps[firsts[1]:firsts[-1] - 1]),
                lambda acc, x: case
                    when len(acc) < len(firsts) and (x.mask >> (len(firsts) - 1 - len(acc))) & 1 = 1
                        then list_append(acc, x.ts_us)
                    else acc
                end,
                [steps[firsts[-1]].ts_us]
            )
        end as walk
    from simple_firsts
),

levels as (
    select
        1 as step_number,
        journey_key,
        pos,
        ts_us,
        is_channel_step,
        channel_ord,
        mask,
        xmask,
        -- set on rows that end a valid path of this level: where its latest path starts, and the
        -- row before on that path (the path is rebuilt from these pointers at the end)
        case when mask & 1 = 1 then pos end as first_pos,
        case when mask & 1 = 1 then ts_us end as first_us,
        cast(null as bigint) as parent_pos,
        false as is_open_continuation,
        cast(null as bigint) as open_previous_us
    from step_rows
    where $mode in ('ordered', 'strict', 'open') and not $simple_ordered

    union all

    select
        step_number,
        journey_key,
        pos,
        ts_us,
        is_channel_step,
        channel_ord,
        mask,
        xmask,
        case when extends then previous_first_pos end as first_pos,
        case when extends then previous_first_us end as first_us,
        case when extends then previous_pos end as parent_pos,
        coalesce(continues_open, false) as is_open_continuation,
        case when continues_open then previous_any_us end as open_previous_us
    from (
        select
            *,
            is_step
            and previous_pos is not null
            and ($window_us is null or ts_us - previous_first_us <= $window_us)
            and (step_window_us is null or ts_us - previous_us <= step_window_us)
            and (last_exclusion_pos is null or last_exclusion_pos <= previous_pos)
            and (
                $mode <> 'strict'
                or pos - previous_pos - 1 = channel_ord - cast(is_channel_step as integer) - previous_channel_ord
            ) as extends,
            $mode = 'open'
            and is_step
            and previous_any_pos is not null
            and ($window_us is null or ts_us - previous_any_us <= $window_us)
            and (step_window_us is null or ts_us - previous_any_us <= step_window_us)
            and (last_exclusion_pos is null or last_exclusion_pos <= previous_any_pos) as continues_open
        from (
            select
                step_number + 1 as step_number,
                journey_key,
                pos,
                ts_us,
                is_channel_step,
                channel_ord,
                mask,
                xmask,
                (mask >> step_number) & 1 = 1 as is_step,
                cast($step_window_us as bigint[])[step_number + 1] as step_window_us,
                -- the last row before this one that ends a valid path of the current level; every
                -- field of its latest path is the running max over such rows (they only grow)
                max(case when first_pos is not null then pos end) over before_row as previous_pos,
                max(case when first_pos is not null then ts_us end) over before_row as previous_us,
                max(first_pos) over before_row as previous_first_pos,
                max(first_us) over before_row as previous_first_us,
                max(case when first_pos is not null then channel_ord end) over before_row as previous_channel_ord,
                -- the last row before this one that matches the current step (open mode)
                max(case when $mode = 'open' and (mask >> (step_number - 1)) & 1 = 1 then pos end)
                    over before_row as previous_any_pos,
                max(case when $mode = 'open' and (mask >> (step_number - 1)) & 1 = 1 then ts_us end)
                    over before_row as previous_any_us,
                max(case when xmask & cast($excl_active as bigint[])[step_number + 1] <> 0 then pos end)
                    over before_row as last_exclusion_pos
            from levels
            where step_number < $n_steps
            window before_row as (
                partition by journey_key order by pos rows between unbounded preceding and 1 preceding
            )
        ) as candidates
    ) as checked
    -- keep what the next level needs: path ends, rows of later steps (and, open, of this step),
    -- exclusion rows; closed modes drop journeys with no path left
    where (
        extends
        or continues_open
        or (mask >> (case when $mode = 'open' then step_number - 1 else step_number end)) <> 0
        or xmask <> 0
    )
    qualify $mode = 'open' or bool_or(extends) over (partition by journey_key)
),

path_ends as (
    select
        journey_key,
        step_number,
        pos,
        ts_us,
        first_pos,
        parent_pos,
        -- conversions: an attempt is the part of the journey after the last completing row
        case
            when $count = 'conversions' then coalesce(
                max(case when step_number = $n_steps then pos end) over (
                    partition by journey_key order by pos range between unbounded preceding and 1 preceding
                ),
                0
            )
            else 0
        end as attempt_after_pos
    from levels
    where first_pos is not null
),

first_ends as (
    -- per attempt and step: the first row that ends a path started inside the attempt
    select
        journey_key,
        attempt_after_pos,
        step_number,
        min(pos) as pos
    from path_ends
    where first_pos > attempt_after_pos
    group by journey_key, attempt_after_pos, step_number
),

closed_ends as (
    select
        journey_key,
        attempt_after_pos,
        max(step_number) as n_reached,
        arg_max(pos, step_number) as end_pos,
        -- steps 1..n_reached, each present once: sorting the structs orders them by step
        list_sort(list({'step_number': step_number, 'pos': pos})) as first_reached
    from first_ends
    group by journey_key, attempt_after_pos
),

closed_walk as (
    -- the latest path of each unit's first row at its furthest step, rebuilt back to step 1
    select
        c.journey_key,
        c.attempt_after_pos,
        p.step_number,
        p.pos,
        p.ts_us,
        p.parent_pos
    from closed_ends as c
    inner join path_ends as p
        on c.journey_key = p.journey_key and c.n_reached = p.step_number and c.end_pos = p.pos

    union all

    select
        w.journey_key,
        w.attempt_after_pos,
        p.step_number,
        p.pos,
        p.ts_us,
        p.parent_pos
    from closed_walk as w
    inner join path_ends as p
        on w.journey_key = p.journey_key and w.step_number - 1 = p.step_number and w.parent_pos = p.pos
),

closed_units as (
    select
        c.journey_key,
        c.attempt_after_pos,
        c.n_reached,
        c.first_reached,
        list_sort(list({'step_number': w.step_number, 'ts_us': w.ts_us})) as path
    from closed_ends as c
    inner join closed_walk as w on c.journey_key = w.journey_key and c.attempt_after_pos = w.attempt_after_pos
    group by c.journey_key, c.attempt_after_pos, c.n_reached, c.first_reached

    union all

    select
        journey_key,
        0 as attempt_after_pos,
        n_reached,
        first_reached,
        list_transform(list_reverse(walk), lambda x, k: {'step_number': k, 'ts_us': x}) as path
    from simple_ends
),

open_pairs as (
    select
        journey_key,
        step_number,
        arg_min(ts_us - open_previous_us, pos) as pair_us
    from levels
    where is_open_continuation
    group by journey_key, step_number
),

step_firsts as (
    select
        r.journey_key,
        s.step_number,
        min(r.pos) as first_pos,
        min(r.ts_us) as first_us
    from step_rows as r
    cross join step_numbers as s
    where $mode in ('open', 'reach') and (r.mask >> (s.step_number - 1)) & 1 = 1
    group by r.journey_key, s.step_number
),

reach_steps as (
    -- every step of every journey that did one (null where it did not), for dense per-step lists
    select
        j.journey_key,
        s.step_number,
        f.first_pos,
        f.first_us,
        o.pair_us
    from (select distinct journey_key from step_firsts) as j
    cross join step_numbers as s
    left join step_firsts as f on j.journey_key = f.journey_key and s.step_number = f.step_number
    left join open_pairs as o on j.journey_key = o.journey_key and s.step_number = o.step_number
),

reach_units as (
    select
        journey_key,
        min(first_us) as started_us,
        list_sort(list({'step_number': step_number, 'first_pos': first_pos, 'pair_us': pair_us})) as steps
    from reach_steps
    group by journey_key
),

unordered_windows as (
    select
        journey_key,
        pos,
        ts_us,
        x_segment,
        case
            when $window_us is null then bit_or(mask) over (partition by journey_key, x_segment)
            else bit_or(mask) over (
                partition by journey_key, x_segment order by ts_us
                range between current row and coalesce($window_us, 0) following
            )
        end as done_mask
    from step_rows
    where $mode = 'unordered' and mask <> 0
),

unordered_best as (
    select
        journey_key,
        arg_max(
            {'pos': pos, 'ts_us': ts_us, 'x_segment': x_segment},
            {'n_done': bit_count(done_mask), 'earliest': -pos}
        ) as attempt_start
    from unordered_windows
    group by journey_key
),

unordered_firsts as (
    select
        r.journey_key,
        s.step_number,
        min({'ts_us': r.ts_us, 'pos': r.pos}) as first_done
    from step_rows as r
    inner join unordered_best as b on r.journey_key = b.journey_key
    cross join step_numbers as s
    where
        r.x_segment = b.attempt_start.x_segment
        and r.ts_us >= b.attempt_start.ts_us
        and ($window_us is null or r.ts_us <= b.attempt_start.ts_us + $window_us)
        and (r.mask >> (s.step_number - 1)) & 1 = 1
    group by r.journey_key, s.step_number
),

unordered_units as (
    select
        journey_key,
        list_sort(list(first_done)) as done
    from unordered_firsts
    group by journey_key
),

units as (
    select
        journey_key,
        attempt_after_pos,
        path[1].ts_us as started_us,
        list_transform(range(1, $n_steps + 1), lambda i: i <= n_reached) as reached,
        list_transform(range(1, $n_steps + 1), lambda i: i <= n_reached) as continued,
        list_transform(range(1, $n_steps + 1), lambda i: i <= n_reached) as from_first,
        list_resize(
            list_transform(path, lambda x, i: (x.ts_us - path[i - 1].ts_us) / 1e6), $n_steps
        ) as seconds_from_previous,
        list_resize(
            list_transform(path, lambda x, i: case when i > 1 then (x.ts_us - path[1].ts_us) / 1e6 end), $n_steps
        ) as seconds_from_first,
        list_resize(list_transform(first_reached, lambda x: x.pos), $n_steps) as step_pos
    from closed_units
    where $mode in ('ordered', 'strict')

    union all

    select
        r.journey_key,
        0 as attempt_after_pos,
        r.started_us,
        list_transform(r.steps, lambda x: x.first_pos is not null) as reached,
        list_transform(
            r.steps,
            lambda x, i: case
                when i = 1 then x.first_pos is not null
                when $mode = 'reach' then r.steps[i - 1].first_pos is not null and x.first_pos is not null
                else x.pair_us is not null
            end
        ) as continued,
        list_transform(
            r.steps,
            lambda x, i: case
                when $mode = 'reach' then r.steps[1].first_pos is not null and x.first_pos is not null
                else i <= coalesce(c.n_reached, 0)
            end
        ) as from_first,
        list_transform(r.steps, lambda x: x.pair_us / 1e6) as seconds_from_previous,
        list_transform(
            range(1, $n_steps + 1), lambda i: case when i > 1 then (c.path[i].ts_us - c.path[1].ts_us) / 1e6 end
        ) as seconds_from_first,
        list_transform(r.steps, lambda x: x.first_pos) as step_pos
    from reach_units as r
    left join closed_units as c on r.journey_key = c.journey_key
    where $mode in ('open', 'reach')

    union all

    select
        journey_key,
        0 as attempt_after_pos,
        done[1].ts_us as started_us,
        list_transform(range(1, $n_steps + 1), lambda i: i <= len(done)) as reached,
        list_transform(range(1, $n_steps + 1), lambda i: i <= len(done)) as continued,
        list_transform(range(1, $n_steps + 1), lambda i: i <= len(done)) as from_first,
        list_resize(
            list_transform(done, lambda x, i: (x.ts_us - done[i - 1].ts_us) / 1e6), $n_steps
        ) as seconds_from_previous,
        list_resize(
            list_transform(done, lambda x, i: case when i > 1 then (x.ts_us - done[1].ts_us) / 1e6 end), $n_steps
        ) as seconds_from_first,
        list_resize(list_transform(done, lambda x: x.pos), $n_steps) as step_pos
    from unordered_units
    where $mode = 'unordered'
),

journeys as (
    select
        journey_key,
        user_key,
        channel,
        device,
        country
    from touchpoints
    where pos = 1
),

variants as (
    select
        t.journey_key,
        arg_min(json_extract_string(e.properties, $variant_key), t.pos) as variant
    from touchpoints as t
    -- An event's step sits right after its session's channel step (stg_touchpoints), so its
    -- session step index is its session event index + 1; channel steps match no event.
    inner join staging.stg_events as e
        on t.session_key = e.session_key and t.session_step_index = e.session_event_index + 1
    where $by = 'variant' and json_extract_string(e.properties, $variant_key) is not null
    group by t.journey_key
),

groups as (
    select
        j.journey_key,
        j.user_key,
        case $by
            when 'channel' then coalesce(j.channel, '(missing)')
            when 'device' then coalesce(j.device, '(missing)')
            when 'country' then coalesce(j.country, '(missing)')
            when 'cohort' then coalesce(strftime(u.first_seen_at, '%Y-%m'), '(missing)')
            when 'variant' then coalesce(v.variant, '(missing)')
            when 'segment' then coalesce(s.segment, '(missing)')
        end as group_value
    from journeys as j
    left join staging.stg_users as u on $by = 'cohort' and j.user_key = u.user_key
    left join variants as v on j.journey_key = v.journey_key
    left join funnel_segments as s on $by = 'segment' and j.user_key = s.user_key
),

final as (
    select
        u.journey_key,
        g.user_key,
        u.attempt_after_pos as attempt,
        u.started_us,
        g.group_value,
        u.reached,
        u.continued,
        u.from_first,
        u.seconds_from_previous,
        u.seconds_from_first,
        u.step_pos
    from units as u
    inner join groups as g on u.journey_key = g.journey_key
)

select * from final
