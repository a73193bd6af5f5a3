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
with touchpoints as (
    select * from staging.stg_touchpoints
    where $level <> 'event' or not is_channel_step
),

steps as (
    select
        case when $scope = 'user' then user_key else session_key end as journey_id,
        user_key,
        session_key,
        user_step_index,
        ts,
        is_channel_step,
        event_name,
        touchpoint,
        stage,
        stage_order,
        channel,
        device,
        country,
        revenue,
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

converted as (
    select journey_id, bool_or(is_goal_step) as is_converted
    from steps
    group by journey_id
),

named as (
    select
        s.*,
        coalesce(r.node, s.raw_node) as node,
        c.is_converted
    from steps as s
    left join renamed_nodes as r on s.raw_node = r.raw_node
    -- (an aggregate joined back: a window over every wide row would cost a third more here)
    inner join converted as c on s.journey_id = c.journey_id
),

kept as (
    select
        *,
        lag(node) over (partition by journey_id order by ts, user_step_index) as previous_node
    from named
    where not list_contains(cast($exclude as varchar[]), node)
),

collapsed as (
    select
        *,
        row_number() over (partition by journey_id order by ts, user_step_index) as position
    from kept
    where not $collapse_repeats or previous_node is null or node <> previous_node
),

goal_cut as (
    select
        *,
        min(position) filter (where is_goal_step) over (partition by journey_id) as goal_position
    from collapsed
),

trimmed as (
    select
        *,
        count(*) over (partition by journey_id) as n_kept
    from goal_cut
    where not $until_goal or goal_position is null or position <= goal_position
),

final as (
    select
        journey_id,
        user_key,
        session_key,
        row_number() over (partition by journey_id order by position) as idx,
        count(*) over (partition by journey_id) as n_steps,
        node,
        ts,
        is_goal_step,
        is_converted,
        is_channel_step,
        event_name,
        touchpoint,
        stage,
        stage_order,
        channel,
        device,
        country,
        revenue
    from trimmed
    where ($first_n = 0 or position <= $first_n)
        and ($last_n = 0 or position > n_kept - $last_n)
)

select * from final
