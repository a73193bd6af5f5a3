-- Grain: one row per step of one journey, at the requested scope and level, after path cleaning.
-- Reads: staging.stg_touchpoints.
-- Params: $scope ('session' | 'user'): a journey is one session or all sessions of one user.
--         $level ('event' | 'touchpoint' | 'stage'): what a node is (event level has no channel steps).
--         $goal, $goal_kind ('event' | 'touchpoint'): the conversion the journey map is drawn for.
--         $rename_patterns, $rename_replacements (varchar[] of equal length): the first pattern that
--             matches a node rewrites it with regexp_replace (merge or rename nodes).
--         $exclude (varchar[]): nodes dropped from the journeys (after renaming).
--         $collapse_repeats (boolean): consecutive repeats of one node count once.
--         $first_n, $last_n (integer, 0 = all): keep only the first / last N steps.
--         $until_goal (boolean): a converting journey ends at its first goal step.
-- Meaning: is_converted says whether the journey reached the goal (judged before cleaning, so
--          excluding nodes never changes who converted); idx is the 1-based step, n_steps the length.
--          Cost: the aggregates and windows see four narrow columns (journey, step index, goal
--          flag, node); the wide rows are read once, in kept, and joined to what those decided.
--          Without exclusions, collapsing or event level (the report's usual asks) a step's
--          position is its stored index, so the wide rows need only the journey totals; the other
--          cases number the kept steps with a window over the narrow columns and join the wide
--          rows on (journey, step index). named is not materialized: a stored copy of the wide
--          rows, or a window sorting them, is what this shape avoids (10M events: 3.8 -> 3.1 s
--          for session journeys as they are, 9.8 -> 7.3 s with repeats collapsed). The planner
--          drops the branches the parameters rule out.
--          Columns: those the sql/analysis files on journey_steps read. The node holds the event name,
--          touchpoint or stage of the level; event_name, touchpoint and revenue stay in
--          stg_touchpoints, since every column here is copied for every step of every request
--          (10M events, the report's preparations without them: 2.3-2.8 -> 1.8-1.9 s, 2.0-2.2 -> 1.7 s,
--          2.9 -> 2.3 s; the one with repeats collapsed, 6.4-7.6 s, is bound by its windows).
with touchpoints as not materialized (
    select * from staging.stg_touchpoints
    where $level <> 'event' or not is_channel_step
),

steps as not materialized (
    select
        case when $scope = 'user' then user_key else session_key end as journey_id,
        user_key,
        session_key,
        -- 1..n in each journey, in step order (stg_touchpoints numbers every step of a user and of
        -- a session without gaps)
        case when $scope = 'user' then user_step_index else session_step_index end as step_index,
        ts,
        is_channel_step,
        stage,
        stage_order,
        channel,
        case $level when 'event' then event_name when 'touchpoint' then touchpoint else stage end as raw_node,
        coalesce(case when $goal_kind = 'event' then event_name = $goal else touchpoint = $goal end, false)
            as is_goal_step
    from touchpoints
),

rename_rules as (
    select
        unnest(cast($rename_patterns as varchar[])) as pattern,
        unnest(cast($rename_replacements as varchar[])) as replacement,
        unnest(range(1, len(cast($rename_patterns as varchar[])) + 1)) as rule_index
),

renamed_nodes as (
    select
        n.raw_node,
        regexp_replace(n.raw_node, r.pattern, r.replacement) as node
    from (select distinct raw_node from steps) as n
    inner join rename_rules as r on regexp_matches(n.raw_node, r.pattern)
    qualify row_number() over (partition by n.raw_node order by r.rule_index) = 1
),

named as not materialized (
    select
        s.*,
        coalesce(r.node, s.raw_node) as node
    from steps as s
    left join renamed_nodes as r on s.raw_node = r.raw_node
),

converted as (
    -- Only when steps are dropped: with every step kept, a journey converted exactly when it has a
    -- goal position (below), and this second pass over the steps is skipped.
    select journey_id, bool_or(is_goal_step) as is_converted
    from steps
    where not (len(cast($exclude as varchar[])) = 0 and not $collapse_repeats and $level <> 'event')
    group by journey_id
),

positioned as (
    -- Every step kept, in stored order: the position is the step index.
    select journey_id, step_index, is_goal_step, step_index as position
    from steps
    where len(cast($exclude as varchar[])) = 0 and not $collapse_repeats and $level <> 'event'
    union all
    -- Steps dropped (excluded nodes, collapsed repeats, channel steps at event level): renumbered.
    select
        journey_id,
        step_index,
        is_goal_step,
        row_number() over (partition by journey_id order by step_index) as position
    from (
        select
            journey_id,
            step_index,
            is_goal_step,
            node,
            lag(node) over (partition by journey_id order by step_index) as previous_node
        from named
        where not (len(cast($exclude as varchar[])) = 0 and not $collapse_repeats and $level <> 'event')
            and not list_contains(cast($exclude as varchar[]), node)
    )
    where not $collapse_repeats or previous_node is null or node <> previous_node
),

journeys as (
    -- Positions run 1..n_positions, so a journey cut at its first goal step keeps goal_position
    -- steps, and the first / last N filters keep a contiguous run of positions.
    select
        journey_id,
        is_converted,
        n_kept,
        case when $last_n > 0 then greatest(n_kept - $last_n, 0) else 0 end as n_dropped_before,
        least(n_kept, case when $first_n > 0 then $first_n else n_kept end) as last_kept
    from (
        select
            g.journey_id,
            coalesce(c.is_converted, g.goal_position is not null) as is_converted,
            case when $until_goal and g.goal_position is not null then g.goal_position else g.n_positions end
                as n_kept
        from (
            select
                journey_id,
                min(position) filter (where is_goal_step) as goal_position,
                count(*) as n_positions
            from positioned
            group by journey_id
        ) as g
        left join converted as c on g.journey_id = c.journey_id
    )
),

dropped_kept as (
    -- Steps dropped: the kept steps' renumbered positions, joined to the wide rows in kept (the two
    -- windows above took 12.6 CPU-seconds on the wide rows, 5.3 on these; 10M events, session
    -- journeys with repeats collapsed).
    select
        p.journey_id,
        p.step_index,
        p.position - j.n_dropped_before as idx,
        j.last_kept - j.n_dropped_before as n_steps,
        j.is_converted
    from positioned as p
    inner join journeys as j on p.journey_id = j.journey_id
    where not (len(cast($exclude as varchar[])) = 0 and not $collapse_repeats and $level <> 'event')
        and p.position > j.n_dropped_before and p.position <= j.last_kept
),

kept as (
    -- Every step kept: positions are the step indexes, so the wide rows need only the journey totals.
    select
        n.*,
        n.step_index - j.n_dropped_before as idx,
        j.last_kept - j.n_dropped_before as n_steps,
        j.is_converted
    from named as n
    inner join journeys as j on n.journey_id = j.journey_id
    where len(cast($exclude as varchar[])) = 0 and not $collapse_repeats and $level <> 'event'
        and n.step_index > j.n_dropped_before and n.step_index <= j.last_kept
    union all
    select
        n.*,
        d.idx,
        d.n_steps,
        d.is_converted
    from named as n
    inner join dropped_kept as d on n.journey_id = d.journey_id and n.step_index = d.step_index
),

final as (
    select
        journey_id,
        user_key,
        session_key,
        idx,
        n_steps,
        node,
        ts,
        is_goal_step,
        is_converted,
        is_channel_step,
        stage,
        stage_order,
        channel
    from kept
)

select * from final
