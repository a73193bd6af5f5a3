-- Grain: one row per line of the analyst's segment mapping file.
-- Reads: $segments_path (CSV with a header and at least the columns user_key, segment).
-- Params: $segments_path (varchar): the file given with `journeys clv --segments FILE`.
-- Meaning: the segment each journey key belongs to, as text; a user listed twice keeps one of its
--          segments (clv_segments takes any_value), a user not listed is 'unassigned'.
with mapping as (
    select * from read_csv($segments_path, all_varchar = true, header = true)
),

final as (
    select
        trim(user_key) as user_key,
        trim(segment) as segment
    from mapping
    where user_key is not null and segment is not null
)

select * from final
