-- Grain: one row per journey step: every event, plus one channel step that opens each session.
-- Params: $session_source ('inactivity' | 'source', as in stg_events).
-- Reads: staging.stg_events and four mapping files analysts edit as data:
--        $touchpoint_rules_path (priority, touchpoint, event_name_regex, page_regex),
--        $channel_touchpoints_path (channel, touchpoint), $touchpoint_stages_path (touchpoint, stage),
--        $stages_path (stage, stage_order, phase).
-- Meaning: the journey as touchpoints and stages. An event takes the touchpoint of the first rule
--          (by priority) whose event_name_regex matches its name and whose page_regex (if any) is
--          found in its URL; a purchase in a session after the user's first purchase session is a
--          repeat_purchase (Loyalty). Unmapped events keep their event name as touchpoint and get
--          stage 'unmapped' (is_mapped = false): nothing is dropped.
with events as not materialized (
    select
        user_key,
        session_key,
        session_index,
        user_event_index,
        session_event_index,
        ts,
        event_name,
        page_url,
        channel,
        device,
        country,
        revenue
    from staging.stg_events
),

rules as (
    select
        cast(priority as integer) as priority,
        touchpoint,
        event_name_regex,
        page_regex
    from read_csv($touchpoint_rules_path, all_varchar = true, header = true)
),

channel_touchpoints as (
    select channel, touchpoint
    from read_csv($channel_touchpoints_path, all_varchar = true, header = true)
),

touchpoint_stages as (
    select touchpoint, stage
    from read_csv($touchpoint_stages_path, all_varchar = true, header = true)
),

stages as (
    select stage, cast(stage_order as integer) as stage_order, phase
    from read_csv($stages_path, all_varchar = true, header = true)
),

event_pages as (
    select distinct event_name, coalesce(page_url, '') as page_key
    from events
),

-- Each regex is tried once per distinct value it can decide, not per (event name, URL, rule): a
-- regex taken from a column is compiled anew for every row it tests (DuckDB compiles only constant
-- patterns once). The name rules are tried on the distinct event names; a URL regex only on the
-- URLs seen with a name its rule matched. 10M events (12,715 name and URL pairs): 0.64-0.76 s ->
-- 0.19-0.27 s; in a day build, the whole model 0.88-1.14 -> 0.55-0.56 s.
name_rules as (
    select
        n.event_name,
        r.priority,
        r.touchpoint,
        r.page_regex
    from (select distinct event_name from event_pages) as n
    inner join rules as r on regexp_full_match(n.event_name, r.event_name_regex)
),

page_checks as (
    select distinct
        ep.page_key,
        nr.page_regex
    from event_pages as ep
    inner join name_rules as nr on ep.event_name = nr.event_name
    where nr.page_regex is not null
),

page_matches as (
    select page_key, page_regex
    from page_checks
    where regexp_matches(page_key, page_regex)
),

event_map as (
    select
        ep.event_name,
        ep.page_key,
        nr.touchpoint
    from event_pages as ep
    inner join name_rules as nr on ep.event_name = nr.event_name
    left join page_matches as pm on nr.page_regex = pm.page_regex and ep.page_key = pm.page_key
    where nr.page_regex is null or pm.page_key is not null
    qualify row_number() over (partition by ep.event_name, ep.page_key order by nr.priority) = 1
),

mapped_events as not materialized (
    select
        e.*,
        m.touchpoint as mapped_touchpoint
    from events as e
    left join event_map as m
        on e.event_name = m.event_name
        and coalesce(e.page_url, '') = m.page_key
),

first_purchase as (
    select user_key, min(session_index) as first_purchase_session_index
    from mapped_events
    where mapped_touchpoint = 'purchase'
    group by user_key
),

session_starts as not materialized (
    -- A session's channel step comes right before the session's first event, so an event's place
    -- among the user's steps is its place among the user's events plus the sessions started so far.
    -- Inactivity sessions come in time order: that count is the session_index. Source sessions may
    -- interleave: a running count (a sort of every row, paid only in that mode; the planner drops
    -- the branch that $session_source rules out). No join back, no sort on text keys.
    select *, session_index as n_sessions_started
    from mapped_events
    where $session_source = 'inactivity'
    union all
    select
        *,
        cast(sum(case when session_event_index = 1 then 1 else 0 end) over (
            partition by user_key order by user_event_index rows unbounded preceding
        ) as bigint) as n_sessions_started
    from mapped_events
    where $session_source = 'source'
),

event_steps as (
    select
        e.user_key,
        e.session_key,
        e.session_index,
        e.user_event_index + e.n_sessions_started as user_step_index,
        e.session_event_index + 1 as session_step_index,
        e.ts,
        false as is_channel_step,
        e.event_name,
        case
            when e.mapped_touchpoint = 'purchase' and e.session_index > fp.first_purchase_session_index
                then 'repeat_purchase'
            else coalesce(e.mapped_touchpoint, e.event_name)
        end as touchpoint,
        e.mapped_touchpoint is not null as is_mapped,
        e.channel,
        e.device,
        e.country,
        e.revenue
    from session_starts as e
    left join first_purchase as fp on e.user_key = fp.user_key
),

channel_steps as (
    select
        e.user_key,
        e.session_key,
        e.session_index,
        e.user_event_index + e.n_sessions_started - 1 as user_step_index,
        1 as session_step_index,
        e.ts,
        true as is_channel_step,
        cast(null as varchar) as event_name,
        coalesce(ct.touchpoint, e.channel) as touchpoint,
        ct.touchpoint is not null as is_mapped,
        e.channel,
        e.device,
        e.country,
        cast(null as decimal(18, 2)) as revenue
    from session_starts as e
    left join channel_touchpoints as ct on e.channel = ct.channel
    where e.session_event_index = 1
),

steps as (
    select * from event_steps
    union all
    select * from channel_steps
),

final as (
    select
        s.user_key,
        s.session_key,
        s.session_index,
        s.user_step_index,
        s.session_step_index,
        s.ts,
        s.is_channel_step,
        s.event_name,
        s.touchpoint,
        coalesce(st.stage, 'unmapped') as stage,
        sg.stage_order,
        sg.phase,
        s.is_mapped and st.stage is not null as is_mapped,
        s.channel,
        s.device,
        s.country,
        s.revenue
    from steps as s
    left join touchpoint_stages as st on s.touchpoint = st.touchpoint
    left join stages as sg on st.stage = sg.stage
)

-- Stored in journey order: every analysis groups or windows the steps by user or session, and
-- DuckDB does that faster on rows already together (10M events: the report 85.6 -> 71.5 s, for
-- 9.4 -> 18.0 s here; 100M: 102 -> 203 s here). An incremental build deletes and re-inserts a
-- touched user's rows together, in this order, so each user's rows stay together.
select * from final
order by user_key, user_step_index
