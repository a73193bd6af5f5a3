-- Grain: one row per distinct event (event_id), in every journey.
-- Reads: raw.events, staging.stg_identity, the channel grouping seed ($channel_groups_path).
-- Params: $session_timeout_minutes (inactivity gap that starts a new session),
--         $session_source ('inactivity' | 'source': keep the source's session id where it has one),
--         $channel_groups_path (CSV: priority, channel, source_regex, medium_regex).
-- Meaning: deduplicated events with the journey key user_key = coalesce(user_id, stitched user_id,
--          anonymous_id), the channel (as given, else grouped from source/medium, else 'Other'),
--          the session they belong to and their position in the user's and the session's journey.
--          A session starts after a gap of more than the timeout; sessions are numbered by start.
with events as (
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

keyed as (
    select
        e.* exclude (channel, file_id, row_number),
        coalesce(e.user_id, i.user_id, e.anonymous_id) as user_key,
        coalesce(e.channel, cm.channel, 'Other') as channel
    from events as e
    left join identity as i on e.anonymous_id = i.anonymous_id
    left join channel_map as cm
        on lower(coalesce(e.source, '')) = cm.source_key
        and lower(coalesce(e.medium, '')) = cm.medium_key
),

ordered as (
    -- The session windows sort only these narrow columns; the wide ones join back at the end.
    select
        event_id,
        user_key,
        ts,
        session_id,
        ts - lag(ts) over (partition by user_key order by ts, event_id) as gap
    from keyed
),

inactivity as (
    select
        *,
        sum(case when gap is null or gap > interval ($session_timeout_minutes) minute then 1 else 0 end) over (
            partition by user_key order by ts, event_id rows unbounded preceding
        ) as inactivity_index
    from ordered
),

grouped as (
    -- With session_source = 'source', every event carrying a source session id belongs to that
    -- session (even when sessions interleave); events without one fall back to inactivity.
    select
        *,
        case
            when $session_source = 'source' and session_id is not null then 's:' || session_id
            else 'i:' || cast(inactivity_index as varchar)
        end as session_group
    from inactivity
),

numbered as (
    select
        *,
        dense_rank() over (partition by user_key order by group_started_at, session_group) as session_index,
        row_number() over (partition by user_key order by ts, event_id) as user_event_index
    from (
        select *, min(ts) over (partition by user_key, session_group) as group_started_at
        from grouped
    )
),

positions as (
    select
        event_id,
        user_key,
        session_index,
        user_event_index,
        row_number() over (partition by user_key, session_index order by ts, event_id) as session_event_index
    from numbered
),

final as (
    select
        k.event_id,
        k.user_key,
        k.user_key || ':' || cast(p.session_index as varchar) as session_key,
        p.session_index,
        p.user_event_index,
        p.session_event_index,
        p.session_event_index = 1 as is_session_start,
        k.user_id,
        k.anonymous_id,
        k.session_id as source_session_id,
        k.ts,
        k.event_name,
        k.raw_event_name,
        k.source,
        k.medium,
        k.campaign,
        k.channel,
        k.page_url,
        k.referrer,
        k.product_id,
        k.revenue,
        k.currency,
        k.device,
        k.country,
        k.properties
    from keyed as k
    inner join positions as p on k.event_id = p.event_id
)

select * from final
