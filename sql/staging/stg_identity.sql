-- Grain: one row per anonymous_id that was ever seen together with a user_id.
-- Reads: raw.events.
-- Params: none.
-- Meaning: identity stitching. When a visitor identifies (an event carries both anonymous_id and
--          user_id), every event of that anonymous_id joins that user's journey. An anonymous_id
--          seen with several user_ids (a shared device) goes to the first one by time, then by id.
with events as (
    select anonymous_id, user_id, ts
    from raw.events
    where anonymous_id is not null and user_id is not null
),

final as (
    select
        anonymous_id,
        user_id,
        ts as identified_at,
        count(*) over (partition by anonymous_id) as n_links
    from events
    qualify row_number() over (partition by anonymous_id order by ts, user_id) = 1
)

select * from final
