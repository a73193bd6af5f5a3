-- Grain: one row per distinct event (event_id), in every journey.
-- Reads: raw.events, staging.stg_identity, the channel grouping seed ($channel_groups_path).
-- Params: $session_timeout_minutes (inactivity gap that starts a new session),
--         $session_source ('inactivity' | 'source': keep the source's session id where it has one),
--         $channel_groups_path (CSV: priority, channel, source_regex, medium_regex).
-- Meaning: deduplicated events with the journey key user_key = coalesce(user_id, stitched user_id,
--          anonymous_id), the channel (as given, else grouped from source/medium, else 'Other'),
--          the session they belong to and their position in the user's and the session's journey.
--          A session starts after a gap of more than the timeout; sessions are numbered by start.
--          raw.events columns that no model reads (referrer, raw_event_name, product_id) stay
--          there (join on event_id): every wide column copied here costs seconds per 10M events.
with events as not materialized (
    -- raw.events holds each event_id once: ingest deduplicates within and across files.
    select * from raw.events
),

identity as (
    select anonymous_id, user_id from staging.stg_identity
),

channel_groups as (
    select
        cast(priority as integer) as priority,
        channel,
        source_regex,
        medium_regex
    from read_csv($channel_groups_path, all_varchar = true, header = true)
),

source_mediums as (
    select distinct
        lower(coalesce(source, '')) as source_key,
        lower(coalesce(medium, '')) as medium_key
    from events
    where channel is null
),

channel_map as (
    select
        sm.source_key,
        sm.medium_key,
        cg.channel
    from source_mediums as sm
    inner join channel_groups as cg
        on (cg.source_regex is null or regexp_full_match(sm.source_key, cg.source_regex))
        and (cg.medium_regex is null or regexp_full_match(sm.medium_key, cg.medium_regex))
    qualify row_number() over (partition by sm.source_key, sm.medium_key order by cg.priority) = 1
),

keys as (
    -- The session windows sort only these narrow columns; the wide ones join back at the end on
    -- (file_id, row_number), two integers that identify a row of raw.events.
    select
        e.file_id,
        e.row_number,
        e.event_id,
        coalesce(e.user_id, i.user_id, e.anonymous_id) as user_key,
        e.ts,
        e.session_id
    from events as e
    left join identity as i on e.anonymous_id = i.anonymous_id
),

ordered as (
    -- One sort by user and time gives the user's event order and each event's predecessor.
    select
        *,
        row_number() over user_time as user_event_index,
        ts - lag(ts) over user_time as gap
    from keys
    window user_time as (partition by user_key order by ts, event_id)
),

inactivity as (
    -- A session starts after a gap of more than the timeout. The running count of starts numbers
    -- the inactivity sessions, and the index of the last start gives each event's place in its
    -- session; both are ordered by the integer user_event_index, a cheaper sort than (ts, event_id).
    select
        *,
        cast(sum(is_start) over user_order as bigint) as inactivity_index,  -- a sum is HUGEINT in DuckDB
        user_event_index - max(case when is_start = 1 then user_event_index end) over user_order + 1
            as inactivity_event_index
    from (
        select
            *,
            case when gap is null or gap > interval ($session_timeout_minutes) minute then 1 else 0 end
                as is_start
        from ordered
    )
    window user_order as (partition by user_key order by user_event_index rows unbounded preceding)
),

by_inactivity as (
    -- session_source = 'inactivity': sessions come in time order, so the inactivity numbering is
    -- the session numbering. (The planner drops the branch that the parameter rules out.)
    select
        file_id,
        row_number,
        user_key,
        inactivity_index as session_index,
        user_event_index,
        inactivity_event_index as session_event_index
    from inactivity
    where $session_source = 'inactivity'
),

grouped as (
    -- session_source = 'source': every event carrying a source session id belongs to that
    -- session (even when sessions interleave); events without one fall back to inactivity.
    select
        *,
        case
            when session_id is not null then 's:' || session_id
            else 'i:' || cast(inactivity_index as varchar)
        end as session_group
    from inactivity
    where $session_source = 'source'
),

by_source as (
    select
        file_id,
        row_number,
        user_key,
        dense_rank() over (partition by user_key order by group_started_at, session_group) as session_index,
        user_event_index,
        row_number() over (partition by user_key, session_group order by ts, event_id) as session_event_index
    from (
        select *, min(ts) over (partition by user_key, session_group) as group_started_at
        from grouped
    )
),

positions as (
    select * from by_inactivity
    union all
    select * from by_source
),

final as (
    select
        e.event_id,
        p.user_key,
        p.user_key || ':' || cast(p.session_index as varchar) as session_key,
        p.session_index,
        p.user_event_index,
        p.session_event_index,
        p.session_event_index = 1 as is_session_start,
        e.user_id,
        e.anonymous_id,
        e.session_id as source_session_id,
        e.ts,
        e.event_name,
        e.source,
        e.medium,
        e.campaign,
        coalesce(e.channel, cm.channel, 'Other') as channel,
        e.page_url,
        e.revenue,
        e.currency,
        e.device,
        e.country,
        e.properties
    from positions as p
    inner join events as e on p.file_id = e.file_id and p.row_number = e.row_number
    left join channel_map as cm
        on lower(coalesce(e.source, '')) = cm.source_key
        and lower(coalesce(e.medium, '')) = cm.medium_key
)

select * from final
